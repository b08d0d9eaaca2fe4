"""cocotb test of the whole network: load pixels (or feed events), start, await done, compare.

The case comes from ``NET_CASE`` (an ``.npz`` written by :func:`sim.e2e.write_case`) and
``NET_META`` (its JSON: the spike maps' layouts and the program's step names). Python touches the
design only to load each image's pixel codes (for an event model: to offer its event frames on
the ``events`` port, one pixel a beat, every cycle), to pulse ``start`` and, while the network runs
autonomously, to note the cycle count whenever the sequencer moves to another step. After ``done``
it reads the logits and every LIF's spike map (through VPI) and compares them with the integer
golden model, naming the first time step, layer and index that differ. ``NET_RESULTS`` receives
the logits, per-step cycles and wall times as JSON. With ``NET_RESET_AFTER`` = N the design is
first reset N cycles into an image (its data registers carry no reset; the check that the
images after it still match is what shows they need none).
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import (ClockCycles, First, ReadOnly, RisingEdge, SimTimeoutError,
                             ValueChange, with_timeout)

from golden.progress import bar
from sim.tb.common import TB, StreamSource


def core(dut):
    """The network module inside the top: the top itself, or the instance ``NET_CORE`` names
    (a wrapper that holds a large weight memory loaded with ``$readmemh``)."""
    for part in filter(None, os.environ.get("NET_CORE", "").split(".")):
        dut = getattr(dut, part)
    return dut


def read_memory(handle) -> list[int]:
    """Return a memory array's words by ascending index (VPI lists them in declared order)."""
    values = [int(v) for v in handle.value]
    indices = list(handle.range)
    out = [0] * len(values)
    for index, value in zip(indices, values):
        out[index] = value
    return out


def read_spikes(dut, spec, T, wide=None) -> np.ndarray:
    """Return a spike map as ``[T, C, H * W]`` from the shared spike memory (``hw.plan``'s
    layout: channel ``c`` at physical channel ``p = order[c]`` (the identity without
    ``order``), in bank ``p % banks``; group ``q = p // banks`` packed ``pack`` a word: word
    ``base + t * step_words + (q // pack) * H + y``, bit ``(q % pack) * W + x``; bank ``b`` is
    bits ``b * bank_bits ..`` of each word).

    ``wide``: the memory's words already read (:func:`read_memory`), shared by every map in it;
    default: read it here."""
    channels, height, width = spec["channels"], spec["height"], spec["width"]
    banks, bits, base = spec["banks"], spec["bank_bits"], spec["base"]
    if spec["layout"] != "shared":
        raise ValueError(f"unknown spike-map layout {spec['layout']!r}")
    pack, step_words = spec["pack"], spec["step_words"]
    if wide is None:
        wide = read_memory(getattr(core(dut), spec["memory"]))
    words = [[(w >> (b * bits)) & ((1 << bits) - 1) for w in wide] for b in range(banks)]
    order = spec.get("order") or range(channels)   # physical channel of each channel
    out = np.zeros((T, channels, height * width), dtype=np.uint8)
    for t in range(T):
        for c, p in enumerate(order):
            for y in range(height):
                group = p // banks
                word = words[p % banks][base + t * step_words + group // pack * height + y]
                word >>= (group % pack) * width
                for x in range(width):
                    out[t, c, y * width + x] = (word >> x) & 1
    return out


def first_difference(got: dict, expected: dict, order: list) -> str | None:
    """Name the first spike that differs: earliest time step, then program order, then index.

    ``got`` and ``expected`` map a LIF name to ``[T, C, N]`` spikes; ``order`` is the program's
    LIF order (a later layer at t = 0 runs before any layer at t = 1, so time comes first).
    """
    first = None
    for rank, lif in enumerate(order):
        diff = np.argwhere(np.asarray(got[lif]) != np.asarray(expected[lif]))
        if diff.size:
            t, c, n = (int(v) for v in min(map(tuple, diff)))
            key = (t, rank, c, n)
            if first is None or key < first[0]:
                first = (key, lif, int(expected[lif][t, c, n]), int(got[lif][t, c, n]))
    if first is None:
        return None
    (t, _, c, n), lif, want, value = first
    return (f"first spike difference at t={t}, layer {lif}, channel {c}, position {n}: "
            f"expected {want}, got {value}")


async def load_pixels(dut, codes):
    """Write pixel codes (``[C, H, W]``, word ``(c * H + y) * W + x``) through the load port."""
    for address, code in enumerate(np.asarray(codes).reshape(-1)):
        dut.load_address.value = address
        dut.load_data.value = int(code)
        dut.load_enable.value = 1
        await RisingEdge(dut.clk)
    dut.load_enable.value = 0


def event_beats(frames) -> list[int]:
    """Return the ``events`` port's beats of one sample: frames ``[T, C, H, W]`` (0/1), per time
    step one beat per pixel in row-major order, bit ``c`` = channel ``c``."""
    frames = np.asarray(frames, dtype=np.int64)
    T, C = frames.shape[:2]
    bits = (frames.reshape(T, C, -1) << np.arange(C).reshape(1, C, 1)).sum(axis=1)
    return [int(v) for v in bits.reshape(-1)]


def external_memory(dut):
    """The external memory of a network with ``weights="axi"``: an AXI4 RAM (read side) holding
    the weight image ``NET_WEIGHTS`` at byte address ``NET_WEIGHT_BASE``, answering each burst
    after ``NET_AXI_LATENCY`` cycles (``N`` or ``LOW-HIGH``, drawn per burst), with ``arready``
    and ``rvalid`` dropped at random with probability ``NET_AXI_PAUSE`` (seed ``NET_AXI_SEED``)."""
    from cocotbext.axi import AxiReadBus

    from sim.tb.axi_memory import LatencyAxiRamRead, parse_latency, random_pauses

    with open(os.environ["NET_WEIGHTS"], "rb") as handle:
        image = handle.read()
    base = int(os.environ.get("NET_WEIGHT_BASE", "0"), 0)
    seed = int(os.environ.get("NET_AXI_SEED", "1"))
    pause = float(os.environ.get("NET_AXI_PAUSE", "0"))
    size = 1 << max(12, (base + len(image) - 1).bit_length())
    memory = LatencyAxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                               size=size, latency=parse_latency(
                                   os.environ.get("NET_AXI_LATENCY", "1")), seed=seed)
    memory.write(base, image)
    if pause > 0:
        memory.ar_channel.set_pause_generator(random_pauses(pause, seed + 1))
        memory.r_channel.set_pause_generator(random_pauses(pause, seed + 2))
    dut.weight_address.value = base
    return memory


def fetcher_state(dut) -> str:
    """The weight fetcher's pointers, for a run that never ends (empty without one)."""
    try:
        fetcher = core(dut).fetcher
    except AttributeError:
        return ""
    names = ("loaded", "free", "g_cur", "a_active", "a_layer", "a_c", "a_pos", "a_issue",
             "w_layer", "w_c", "w_pos", "e_index")
    values = []
    for name in names:
        try:
            values.append(f"{name}={int(getattr(fetcher, name).value)}")
        except (AttributeError, ValueError):
            pass
    return "; weight fetcher: " + ", ".join(values) if values else ""


async def watch_steps(dut, log, progress=None):
    """Record ``(time step, program step, cycles)`` whenever the sequencer changes step or time
    step (the layer schedule keeps the step and moves the time step); show the time step,
    program step and cycles so far on the ``progress`` bar (if given)."""
    shown = 0.0
    while True:
        await First(ValueChange(dut.step), ValueChange(dut.time_step))
        await ReadOnly()
        log.append((int(dut.time_step.value), int(dut.step.value), int(dut.cycles.value)))
        if progress is not None and time.perf_counter() - shown >= 0.5:  # redraw twice a second
            shown = time.perf_counter()
            t, step, cycles = log[-1]
            progress.set_postfix_str(f"t={t} step {step} {cycles:,} cycles")


#: The memories whose read ports are synthesised without collision semantics
#: (``hw.params.NO_RW_CHECK``): the network must never read a word of them in the cycle it writes it.
COLLISION_FREE = ("spike", "stream")


def collision_probes(dut):
    """Return ``[(memory, collision, read addr), ...]``: the probe signals ``hw.shared`` names
    for each memory of :data:`COLLISION_FREE` (``collision``: a read and a write of one word in
    this cycle)."""
    net = core(dut)
    return [(memory, getattr(net, f"{memory}_collision_probe"),
             getattr(net, f"{memory}_read_probe_addr")) for memory in COLLISION_FREE]


async def watch_collisions(dut, probe, image, failures):
    """A read and a write of the same word of a :data:`COLLISION_FREE` memory in one cycle is a
    failure (on the FPGA the word read would be undefined). Watches one memory's ``probe``
    (:func:`collision_probes`); records its first collision and stops.

    Event-driven: it wakes when the ``collision`` probe rises and fails if the probe is still 1
    once the time step has settled (``ReadOnly``: what the next clock edge samples; a glitch that
    settles to 0 is no collision). Every settled 1 is preceded by such a rise, so this sees every
    collision a check at every cycle would, without running Python each cycle (a third of a
    whole-network co-simulation's time went to that check).
    """
    memory, collision, raddr = probe
    while True:
        await RisingEdge(collision)
        await ReadOnly()
        if str(collision.value) == "1":
            failures.append(f"image {image[0]}: the {memory} memory's word "
                            f"{int(raddr.value)} is read in the cycle it is written, at "
                            f"step {int(dut.step.value)} (time step "
                            f"{int(dut.time_step.value)}); its block RAM has no collision "
                            "semantics (hw.params.NO_RW_CHECK)")
            return


@cocotb.test()
async def test_network(dut):
    """Every image: logits and every LIF's spikes equal the integer golden model's."""
    case = np.load(os.environ["NET_CASE"])
    with open(os.environ["NET_META"]) as handle:
        meta = json.load(handle)
    T, classes = meta["T"], meta["classes"]
    tb = TB(dut)
    dut.start.value = 0
    dut.time_steps.value = T    # the run's time steps (the design may hold more)
    memory = None
    if os.environ.get("NET_WEIGHTS"):
        memory = external_memory(dut)
    events = meta.get("events", False)
    if events:
        source = StreamSource(dut, "events", dut.clk)  # offered every cycle: the port never waits
    else:
        dut.load_enable.value = 0
    await tb.reset()
    while True:
        await ReadOnly()
        if dut.ready.value:
            break
        await RisingEdge(dut.ready)
    await RisingEdge(dut.clk)
    results = []
    failures = []
    codes_all = case["codes"]
    images = codes_all.shape[0]
    # Image k of N, and the running image's time step, step and cycles so far, on stderr (off
    # under CI=true): a whole-network run takes seconds to minutes per image.
    progress = bar(total=images, desc="co-simulation", unit="image")
    reset_after = int(os.environ.get("NET_RESET_AFTER", "0"))
    if reset_after and not events:
        # A reset in the middle of an image (the last one, so that the first image measured
        # starts over another's half-computed state): every register it does not clear must be
        # written before it is read again, so the images below still match.
        await load_pixels(dut, codes_all[-1])
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await ClockCycles(dut.clk, reset_after)
        await tb.reset()
        while True:
            await ReadOnly()
            if dut.ready.value:
                break
            await RisingEdge(dut.ready)
        await RisingEdge(dut.clk)
    probes = collision_probes(dut)
    current = [0]
    collisions = [cocotb.start_soon(watch_collisions(dut, probe, current, failures))
                  for probe in probes]
    for image in range(images):
        current[0] = image
        feeder = None
        if events:
            feeder = cocotb.start_soon(source.send(event_beats(codes_all[image])))
        else:
            await load_pixels(dut, codes_all[image])
        log = []
        watcher = cocotb.start_soon(watch_steps(dut, log, progress))
        wall = time.perf_counter()
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        limit = int(os.environ.get("NET_MAX_CYCLES", "0"))
        if limit:
            try:
                await with_timeout(RisingEdge(dut.done), 10 * limit, "ns")
            except SimTimeoutError:
                watcher.cancel()
                raise AssertionError(f"image {image}: no done after {limit:,} cycles (NET_MAX_CYCLES): "
                                     f"stuck at time step {int(dut.time_step.value)}, step "
                                     f"{int(dut.step.value)}{fetcher_state(dut)}"
                                     f"{memory.state() if memory else ''}") from None
        else:
            await RisingEdge(dut.done)
        await ReadOnly()
        elapsed = time.perf_counter() - wall
        watcher.cancel()
        if feeder is not None and not feeder.done():
            failures.append(f"image {image}: the network finished without taking every event "
                            "beat")
            feeder.cancel()
        total = int(dut.cycles.value)
        weight_bytes = None
        if memory is not None:
            # Every weight read once per time step (the image's layers, T times; the layer
            # schedule reads a layer kept in the ring once); and no error answer.
            weight_bytes = int(dut.weight_bytes.value)
            want_bytes = int(os.environ["NET_WEIGHT_RUN_BYTES"])
            if weight_bytes != want_bytes:
                failures.append(f"image {image}: {weight_bytes} weight bytes read, expected "
                                f"{want_bytes} (hw.weightfetch.WeightRing.bytes_per_run)")
            if int(dut.weight_error.value):
                failures.append(f"image {image}: weight_error is set")
        width = meta["logit_bits"]
        raw = int(dut.logits.value)
        logits = []
        for c in range(classes):
            v = (raw >> (c * width)) & ((1 << width) - 1)
            logits.append(v - (1 << width) if v >> (width - 1) else v)
        want = [int(v) for v in case["logits"][image]]
        # Every map lives in the same memory: read it once per image (through VPI), not per map.
        memories = {}
        for lif in meta["lif_order"]:
            name = meta["maps"][lif]["memory"]
            if name not in memories:
                memories[name] = read_memory(getattr(core(dut), name))
        got_maps = {lif: read_spikes(dut, meta["maps"][lif], T, memories[meta["maps"][lif]["memory"]])
                    for lif in meta["lif_order"]}
        want_maps = {lif: case[f"spikes:{lif}"][image] for lif in meta["lif_order"]}
        message = first_difference(got_maps, want_maps, meta["lif_order"])
        if message:
            failures.append(f"image {image}: {message}")
        if logits != want:
            index = next(i for i in range(classes) if logits[i] != want[i])
            failures.append(f"image {image}: logits differ at class {index}: expected "
                            f"{want[index]}, got {logits[index]} (all: {want} vs {logits})")
        dut._log.info("image %d: %d cycles in %.2f s (%.0f cycles/s), logits %s %s", image,
                      total, elapsed, total / elapsed if elapsed else 0, logits,
                      "ok" if logits == want and message is None else "MISMATCH")
        results.append({"image": image, "cycles": total, "wall_s": elapsed, "logits": logits,
                        "steps": log, "match": logits == want and message is None,
                        "weight_bytes": weight_bytes})
        progress.update()
        await RisingEdge(dut.clk)
    progress.close()
    for watcher in collisions:
        watcher.cancel()
    out = os.environ.get("NET_RESULTS")
    if out:
        with open(out, "w") as handle:
            json.dump({"images": results}, handle)
    assert not failures, "\n".join(failures)
