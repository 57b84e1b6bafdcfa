from koda.shared.launch import run_named

run_named("worker")
