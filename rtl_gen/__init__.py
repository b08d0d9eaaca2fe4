"""rtl_gen: design points, Verilog emission, lint, synthesis estimates, and the Python API.

The API (:mod:`rtl_gen.api`) is re-exported here, imported on first use::

    import rtl_gen

    design = rtl_gen.convert("golden/checkpoints/demo.pth", T=1)
    report = design.simulate(images=1)
"""

__all__ = ["convert", "Design", "Report"]


def __getattr__(name):
    # Lazy (PEP 562): `python -m rtl_gen` and `rtl_gen.config` do not import sim/ and torch.
    if name in __all__:
        from . import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'rtl_gen' has no attribute {name!r}")
