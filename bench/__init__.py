"""zeroserve's benchmarks: each runs its baseline in the same run and prints one JSON line."""
