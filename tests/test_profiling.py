"""ftr.profiling: idle gaps between kernels put down to the host operator running then (synthetic events), and a
profiled stretch on the CPU."""

import pytest

from ftr import profiling as profile_gaps


def test_gaps_between_merged_kernels():
    kernels = [(0, 10), (5, 12), (20, 30), (30.002, 40), (100, 110)]
    assert profile_gaps.merge(kernels)[:2] == [(0, 12), (20, 30)]
    assert profile_gaps.gaps(kernels) == [(12, 20), (40, 100)]  # the 2 ns spacing is not a gap


def test_idle_time_goes_to_the_innermost_operator_spanning_the_gap():
    idle = [(12, 20), (40, 100), (200, 210)]
    cpu = [(0, 150, "aten::nonzero", "step"), (10, 30, "aten::nonzero > cudaStreamSynchronize", "step"),
           (35, 120, "Optimizer.step", "Optimizer.step")]
    table = profile_gaps.attribute(idle, cpu)
    assert table["idle_ms"] == round((8 + 60 + 10) / 1000, 2) and table["gaps"] == 3
    ops = {row["op"]: row["idle_ms"] for row in table["by_op"]}
    assert ops == {"aten::nonzero > cudaStreamSynchronize": 0.01, "Optimizer.step": 0.06, profile_gaps.NO_OP: 0.01}
    roots = {row["op"]: row["gaps"] for row in table["by_root"]}
    assert roots == {"step": 1, "Optimizer.step": 1, profile_gaps.NO_OP: 1}


def test_a_gap_in_python_is_named_after_the_wait_that_preceded_it():
    # the host waits in a sync until the GPU is done (t=50), then runs Python until it launches again at t=80
    cpu = [(10, 51, "aten::_local_scalar_dense > cudaStreamSynchronize", "aten::item"), (52, 53, "aten::view", "x")]
    table = profile_gaps.attribute([(50, 80)], cpu)
    assert table["by_op"][0]["op"] == f"{profile_gaps.NO_OP}, after aten::_local_scalar_dense > cudaStreamSynchronize"
    assert table["by_root"][0]["op"] == "aten::item"


def test_a_session_on_the_cpu_summarises_without_kernels():
    import pytest

    torch = pytest.importorskip("torch")
    session = profile_gaps.Session()
    session.start()
    torch.ones(64, 64) @ torch.ones(64, 64)
    session.stop()
    summary = session.summary()
    assert summary["wall_s"] >= 0 and summary["gpu_busy_s"] == 0 and summary["idle"] == {}
    assert "aten::matmul" in session.table(by="cpu")


def test_host_syncs_are_named_by_the_innermost_frame_outside_torch():
    import traceback

    frames = [traceback.FrameSummary("/x/site-packages/transformers/trainer.py", 1773, "_inner_training_loop"),
              traceback.FrameSummary("/x/site-packages/torch/_tensor.py", 40, "__bool__")]
    assert profile_gaps.HostSyncs.site(frames) == "transformers/trainer.py:1773 _inner_training_loop"
    assert profile_gaps.HostSyncs.site(frames[1:]) == "(torch)"
    syncs = profile_gaps.HostSyncs()
    syncs.sites.update({"a.py:1 f": 4, "b.py:2 g": 2})
    assert syncs.summary(steps=2) == {"syncs": 6, "per_step": 3.0, "sites": [{"site": "a.py:1 f", "count": 4},
                                                                           {"site": "b.py:2 g", "count": 2}]}


@pytest.mark.gpu
def test_host_syncs_counts_a_read_back_where_it_was_made():
    import torch

    syncs = profile_gaps.HostSyncs()
    x = torch.ones(4, device="cuda")
    syncs.start()
    try:
        x.sum().item()
        (x * 2).sum()  # no read: not counted
    finally:
        syncs.stop()
    summary = syncs.summary()
    assert summary["syncs"] == 1 and summary["sites"][0]["site"].startswith("tests/test_profiling.py:")
