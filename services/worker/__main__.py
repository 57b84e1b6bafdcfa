from koda.services import run

run("worker")
