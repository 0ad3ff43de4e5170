"""The trace-driven fleet simulator behind `sloscale bench`.

`fleet` replays a trace against a Deployment of `EngineModel` replicas driven by an autoscaler;
`metrics` turns the simulated pods into the `MetricsSnapshot`s the operator reads live; `ours`
runs the operator's real `decide`; `baselines` are the autoscalers SREs use today; `oracle` is
the clairvoyant lower bound on cost; `bench` runs them all and `report` prints and plots the
result. Nothing in the operator's production modules imports this package.
"""
