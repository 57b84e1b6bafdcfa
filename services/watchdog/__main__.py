from koda.services import run

run("watchdog")
