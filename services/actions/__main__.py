from koda.services import run

run("actions")
