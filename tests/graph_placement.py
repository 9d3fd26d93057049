"""`assert_placed`: what defining a GPU graph without a GPU does not check (used by the tests/*/test_gpu_graphs.py)."""
from dali_has import fused


def assert_placed(pipe) -> None:
    """Every operator of the defined graph placed on the GPU ("gpu" or "mixed") has a backend there."""
    from nvidia.dali import backend

    fused.load()  # registers the plugin's operators and their backends
    registered = {"gpu": set(backend.RegisteredGPUOps()), "mixed": set(backend.RegisteredMixedOps())}
    outputs = pipe._graph_out if isinstance(pipe._graph_out, (list, tuple)) else [pipe._graph_out]
    stack, seen, misplaced = list(outputs), set(), []
    while stack:
        operator = getattr(stack.pop(), "source", None)
        if operator is None or id(operator) in seen:
            continue
        seen.add(id(operator))
        device, name = operator._op.device, operator._op._schema.Name()
        if device in registered and name not in registered[device]:
            misplaced.append(f"{name} ({device})")
        stack += operator._inputs  # argument inputs (e.g. a crop window node) included
    assert not misplaced and seen, misplaced
