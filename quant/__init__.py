"""quant."""

#: Weight and pixel-code widths the quantizer accepts (here, so a command line checks them before
#: importing torch).
MIN_BITS, MAX_BITS = 2, 16
