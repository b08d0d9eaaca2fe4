"""The demo network on Verilator, bit-exact against the integer golden model, at T=1 and T=2.

Without a loadable ``golden/checkpoints/demo.pth`` a seeded random demo model is used (the check
is about exactness, not accuracy). The first build of a design point takes minutes (the weights
are baked into the Verilog); later runs reuse it.
"""

import pytest

from sim.e2e import run_network


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("T", [1, 2])
def test_demo_network_bit_exact(T, tmp_path):
    summary = run_network(T, 2, tmp_path)  # shares its build with `python -m sim.e2e`
    print(f"T={T}: cycles {[r['cycles'] for r in summary['rtl']]}, "
          f"wall {[round(r['wall_s'], 2) for r in summary['rtl']]} s")
    assert summary["error"] is None, summary["error"]
    assert len(summary["rtl"]) == 2
    assert summary["rtl_pred"] == summary["int_pred"]
