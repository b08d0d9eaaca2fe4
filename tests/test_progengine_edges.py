"""Programmable synapse engine edges the layer tests leave open: the config and output port bit
layouts (each field exactly wide enough), layer_config's defaults and derived sizes by hand.
Written to kill mutants `python -m tests.mutate --files hw/progengine.py` found surviving (the
layouts and layer_config are now in hw/progengine_config.py)."""

from hw.progengine_config import engine_config_layout, engine_output_layout, layer_config


def offsets(layout):
    return {name: (field.offset, field.width) for name, field in layout}


def packed(widths):
    """{name: (offset, width)} of fields laid out in order from bit 0."""
    out, offset = {}, 0
    for name, width in widths:
        out[name] = (offset, width)
        offset += width
    return out


def test_config_port_layout_by_hand():
    # max_side 7 (3 bits), kernel up to 2**3 = 8 (4 bits), kernel_log up to 3 (2 bits),
    # stride_log up to 1 (1 bit), padding up to 3 (2 bits), out_width_log up to
    # ceil(log2 7) = 3 (2 bits), groups up to 2**2 = 4 (3 bits), groups_log up to 2 (2 bits),
    # 100 weight words (7 bits), 9 bias words (4 bits).
    layout = engine_config_layout(max_side=7, max_padding=3, max_kernel_log=3, max_stride_log=1,
                                  max_groups_log=2, weight_depth=100, bias_depth=9)
    assert offsets(layout) == packed([
        ("height", 3), ("width", 3), ("kernel", 4), ("kernel_log", 2), ("stride_log", 1),
        ("padding", 2), ("out_height", 3), ("out_width", 3), ("out_width_log", 2),
        ("groups", 3), ("groups_log", 2), ("weight_base", 7), ("bias_base", 4)])
    # Zero maxima still get one bit; side 8 needs 4 bits but out_width_log only up to 3.
    layout = engine_config_layout(max_side=8, max_padding=0, max_kernel_log=0, max_stride_log=0,
                                  max_groups_log=0, weight_depth=1, bias_depth=2)
    assert offsets(layout) == packed([
        ("height", 4), ("width", 4), ("kernel", 1), ("kernel_log", 1), ("stride_log", 1),
        ("padding", 1), ("out_height", 4), ("out_width", 4), ("out_width_log", 2),
        ("groups", 1), ("groups_log", 1), ("weight_base", 1), ("bias_base", 1)])


def test_output_port_layout_by_hand():
    layout = engine_output_layout(lanes=3, accumulator_width=10, max_side=7, max_groups_log=2,
                                  bank_depth=20)
    assert offsets(layout) == packed([("values", 30), ("oy", 3), ("ox", 3), ("group", 2),
                                      ("index", 5), ("last", 1)])
    layout = engine_output_layout(lanes=1, accumulator_width=4, max_side=9, max_groups_log=0,
                                  bank_depth=16)
    assert offsets(layout) == packed([("values", 4), ("oy", 4), ("ox", 4), ("group", 1),
                                      ("index", 4), ("last", 1)])


def test_layer_config_defaults_and_sizes_by_hand():
    cfg = layer_config(in_channels=3, out_channels=9, kernel=3, height=6, width=5, lanes=4)
    assert (cfg.stride, cfg.stride_log, cfg.padding, cfg.weight_base, cfg.bias_base) == (1, 0, 0,
                                                                                       0, 0)
    assert (cfg.out_height, cfg.out_width, cfg.kernel_log, cfg.groups, cfg.groups_log,
            cfg.out_width_log) == (4, 3, 2, 3, 2, 2)
    assert cfg.weight_words_needed == 3 << (2 * 2 + 2) == 192
    assert cfg.bank_words_needed == 4 << (2 + 2) == 64
    assert (cfg.words_per_frame, cfg.beats) == (18, 36)
    # stride 4, padding 2, 5x5 kernel on 9x13: out (9+4-5)//4+1 = 3, (13+4-5)//4+1 = 4.
    cfg = layer_config(in_channels=1, out_channels=4, kernel=5, stride=4, padding=2, height=9,
                       width=13, lanes=4, weight_base=7, bias_base=2)
    assert (cfg.out_height, cfg.out_width, cfg.stride_log, cfg.kernel_log, cfg.groups,
            cfg.groups_log, cfg.out_width_log) == (3, 4, 2, 3, 1, 0, 2)
    assert (cfg.weight_base, cfg.bias_base) == (7, 2)


def test_pack_range_limits_are_exact():
    """Signed weight_width / accumulator_width ranges, both ends: in range packs, one past
    refuses."""
    import numpy as np  # noqa: PLC0415
    import pytest  # noqa: PLC0415

    from hw.progengine_config import pack_layer_biases, pack_layer_weights  # noqa: PLC0415

    def weights(value):
        return pack_layer_weights(np.full((2, 1, 1, 1), value), lanes=2, weight_width=4,
                                  kernel_log=0, groups_log=0)

    assert weights(-8) == [0x88] and weights(7) == [0x77]
    for value in (-9, 8):
        with pytest.raises(ValueError, match="does not fit weight_width 4"):
            weights(value)
    assert pack_layer_biases(np.array([-32, 31, 5]), lanes=2, accumulator_width=6,
                             groups=2) == [0x20 | 31 << 6, 5]
    for value in (-33, 32):
        with pytest.raises(ValueError, match="does not fit accumulator_width 6"):
            pack_layer_biases(np.array([value]), lanes=2, accumulator_width=6, groups=1)


def run_single_layer(spec, seed, rate=0.5):
    """One layer on an engine sized for it alone (so no other layer widens its registers)."""
    from test_progengine import Network, run  # noqa: PLC0415 (the suite's harness)

    net = Network(seed, 2, [spec])
    run(net, [net.frame(0, rate), net.frame(0, 1.0)], f"single layer {spec}")


def test_one_by_one_kernel_with_wide_padding_and_stride():
    """Largest positive tap offset (padding + stride - kernel = 3 + 4 - 1) with 1x1 kernels only:
    the narrowest engine for it (kernel_log 0)."""
    # (cin, cout, kernel, stride, padding, height, width)
    run_single_layer((2, 3, 1, 4, 3, 6, 5), seed=21)


def test_largest_kernel_without_padding():
    """Most negative tap offset (1 - 7) on an engine with no padding and stride 1."""
    run_single_layer((2, 3, 7, 1, 0, 8, 7), seed=22)


def test_groups_past_four():
    """G = 6 groups (groups_log 3): the group counter's end-of-row flag beyond 2-bit counters."""
    run_single_layer((2, 11, 3, 1, 1, 4, 4), seed=24)



def test_one_by_one_kernel_small_padding_large_stride():
    """Offset padding + stride - kernel = 1 + 4 - 1 with padding 1: the stride term dominates."""
    run_single_layer((1, 2, 1, 4, 1, 9, 9), seed=25)


def test_bias_memory_bound_is_exact_and_control_ports_are_one_bit():
    import dataclasses  # noqa: PLC0415

    import pytest  # noqa: PLC0415
    from test_progengine import Network  # noqa: PLC0415

    net = Network(26, 2, [(2, 3, 1, 1, 0, 2, 2)])  # G = 2 bias words, after one garbage word
    engine, cfg = net.engine, net.layers[0][0]
    words = len(engine.bias_words)
    fits = dataclasses.replace(cfg, bias_base=words - cfg.groups)
    engine.check_layer(fits)
    with pytest.raises(ValueError, match="bias_base \\+ groups"):
        engine.check_layer(dataclasses.replace(fits, bias_base=fits.bias_base + 1))
    assert (len(engine.weight.en), len(engine.ready)) == (1, 1)


def test_bank_clearing_takes_exactly_init_cycles():
    """After reset `ready` stays low for exactly `init_cycles` cycles (one bank word each)."""
    from amaranth.sim import Simulator  # noqa: PLC0415
    from test_progengine import Network  # noqa: PLC0415

    net = Network(27, 2, [(2, 5, 3, 1, 1, 3, 3)])
    engine = net.engine
    low = []

    async def bench(ctx):
        for _ in range(engine.init_cycles + 8):
            low.append(not ctx.get(engine.ready))
            await ctx.tick()

    sim = Simulator(net.harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert engine.init_cycles > 2
    assert low == [True] * engine.init_cycles + [False] * 8
