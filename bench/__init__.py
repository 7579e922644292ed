"""podium's benchmark harness: the W1–W6 workloads of bench/README.md, embedded SQLite config.

Run `python -m bench --workload W2 --json`; each workload runs in a fresh subprocess.
"""
