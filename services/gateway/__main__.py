from koda.services import run

run("gateway")
