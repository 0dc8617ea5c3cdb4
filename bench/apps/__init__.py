"""The two comparison servers of the benchmark; never part of the product."""
