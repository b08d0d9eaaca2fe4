"""Generate ``official_tiny.pt``: outputs of the official Meta-SpikeFormer code on a small model.

Run by hand, never by the tests, in a scratch environment that can import the official
``classification/models.py`` of BICLab/Spike-Driven-Transformer-V2 (commit 35f245f) with
spikingjelly 0.0.0.0.12. Nothing of the official code is in this repository: pass the folder that
holds an importable ``models`` module (with its imports satisfied) as ``--official``::

    python tests/data/golden/make_official_reference.py --official /tmp/official_scratch \
        --out tests/data/golden/official_tiny.pt

The official neurons are created with ``backend="cupy"``; the loader in ``--official`` must make
``MultiStepLIFNode`` use ``backend="torch"`` (same arithmetic, CPU). This script then:

1. builds ``Spiking_vit_MetaFormer`` with a small official-format configuration (the official
   block counts 1/1/1/1/6/2, KD head) and seed 0;
2. replaces every weight, bias and BN statistic by seeded random values, so spikes are neither
   all-zero nor saturated (a freshly initialised model barely fires in eval mode);
3. records, for T=1 and T=3 in eval mode, the logits and every LIF's spikes by module path;
4. records, for T=2 in training mode, both heads' outputs and the gradient of a fixed weighted
   sum of them with respect to the input and a few parameters (the norm for every parameter),
   through the surrogate gradients, with batch statistics in BN.

Spikes are stored bit-packed (``numpy.packbits`` of the flattened tensor, with its shape).
"""

import argparse
import importlib
import sys

import torch

CONFIG = dict(embed_dim=[8, 16, 32, 40], depths=[1, 1, 1, 1, 6, 2], num_heads=4,
              mlp_ratio=4, img_size=64, in_channels=3, num_classes=7, kd_head=True)


# Full gradients are stored for these (one of each kind of layer); a norm for every other one.
GRAD_KEYS = ("downsample1_1.encode_conv.weight", "ConvBlock1_1.0.Conv.pwconv1.weight",
             "ConvBlock2_2.0.conv2.weight", "block3.0.attn.q_conv.0.body.0.weight",
             "block3.0.attn.v_conv.0.body.2.0.weight", "block3.5.attn.proj_conv.1.weight",
             "block4.1.mlp.fc2_conv.weight", "head.weight", "head_kd.bias")


def pack(spikes):
    """Return spikes as ``(shape, packed bits as uint8)``: 8x smaller than bool."""
    import numpy as np
    bits = np.packbits(spikes.to(torch.bool).flatten().numpy())
    return tuple(spikes.shape), torch.from_numpy(bits)


def randomise(model, gen):
    """Overwrite every parameter and BN buffer with seeded values that make neurons fire."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.75)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 0.3)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) * 1.5 + 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="folder with an importable loader")
    ap.add_argument("--loader", default="load_official",
                    help="module in --official exposing `official` (models.py) and `functional`")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.official)
    loader = importlib.import_module(args.loader)
    official, functional = loader.official, loader.functional
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = official.Spiking_vit_MetaFormer(
        img_size_h=64, img_size_w=64, patch_size=16, in_channels=3, num_classes=7,
        embed_dim=CONFIG["embed_dim"], num_heads=4, mlp_ratios=4, depths=8, sr_ratios=1,
        kd=True)
    gen = torch.Generator().manual_seed(1234)
    randomise(model, gen)
    x = torch.randn((2, 3, 64, 64), generator=gen) * 1.5 + 0.5
    lifs = {n: m for n, m in model.named_modules() if type(m).__name__ == "TorchLIF"}
    record = {}
    for n, m in lifs.items():
        m.register_forward_hook(lambda mod, i, o, n=n: record.__setitem__(n, o.detach()))
    result = dict(config=CONFIG, state_dict={k: v.clone() for k, v in
                                             model.state_dict().items()}, input=x)
    model.eval()
    for T in (1, 3):
        model.T = T
        record.clear()
        functional.reset_net(model)
        with torch.no_grad():
            result[f"logits_T{T}"] = model(x)
        result[f"spikes_T{T}"] = {n: pack(s) for n, s in record.items()}
        rates = [float(s.float().mean()) for s in record.values()]
        low = [n for n, s in record.items() if float(s.float().mean()) < 0.02]
        print("barely firing:", low)
        print(f"T={T}: {len(rates)} LIFs, firing rates min {min(rates):.3f} "
              f"mean {sum(rates) / len(rates):.3f} max {max(rates):.3f}")
    model.train()
    model.T = 2
    functional.reset_net(model)
    xg = x.clone().requires_grad_(True)
    out, out_kd = model(xg)
    w = torch.randn(out.shape, generator=gen)
    w_kd = torch.randn(out.shape, generator=gen)
    loss = (out * w).sum() + (out_kd * w_kd).sum()
    loss.backward()
    result.update(train_T=2, train_out=out.detach(), train_out_kd=out_kd.detach(),
                  train_w=w, train_w_kd=w_kd, grad_input=xg.grad.detach(),
                  grad_norms={n: p.grad.detach().double().norm() for n, p in
                              model.named_parameters()},
                  grads={n: p.grad.detach().clone() for n, p in model.named_parameters()
                         if n in GRAD_KEYS})
    torch.save(result, args.out)
    print("saved", args.out)


if __name__ == "__main__":
    main()
