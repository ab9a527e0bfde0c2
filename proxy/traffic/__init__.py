"""Traffic control: rate and concurrency limits and budgets, exact across replicas (Redis) or in one
process (memory). `gate.TrafficGate` is what the forwarder calls; `counters` holds the shared state."""
