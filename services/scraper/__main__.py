from koda.services import run

run("scraper")
