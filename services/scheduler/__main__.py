from koda.services import run

run("scheduler")
