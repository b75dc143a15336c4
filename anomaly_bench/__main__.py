from anomaly_bench.cli import main

main()
