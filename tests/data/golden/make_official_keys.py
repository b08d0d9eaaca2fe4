"""Generate ``official_keys.json.gz``: state-dict keys and shapes of the official models.

Run by hand in a scratch environment that imports the official ``classification/models.py``
(see ``make_official_reference.py`` for the ``--official`` folder). The 31.3M and 55.4M models
come from the official factories ``metaspikformer_8_384`` and ``metaspikformer_8_512``; the
15.1M one is ``Spiking_vit_MetaFormer`` with ``embed_dim=[64, 128, 256, 360]`` and otherwise the
same arguments (it has no classification factory). All are built with ``kd=True``; the keys
without ``head_kd.`` are the plain models'.
"""

import argparse
import gzip
import importlib
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True)
    ap.add_argument("--loader", default="load_official")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.official)
    official = importlib.import_module(args.loader).official
    kw = dict(img_size_h=224, img_size_w=224, patch_size=16, num_heads=8, mlp_ratios=4,
              in_channels=3, num_classes=1000, depths=8, sr_ratios=1, kd=True)
    models = {
        "15M": lambda: official.Spiking_vit_MetaFormer(embed_dim=[64, 128, 256, 360], **kw),
        "31M": lambda: official.metaspikformer_8_384(kd=True),
        "55M": lambda: official.metaspikformer_8_512(kd=True),
    }
    out = {}
    for name, build in models.items():
        model = build()
        out[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        params = sum(p.numel() for n, p in model.named_parameters()
                     if not n.startswith("head_kd."))
        print(name, len(out[name]), "entries,", params, "parameters without head_kd")
    with gzip.open(args.out, "wt") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
