"""Bundled device profiles: one TOML file per device, every constant with its source.

Each constant is a table ``{ value = <number>, unit = "<unit>", source = "<citation>" }``; the keys
and their validation live in `weightwise.profile.device`. How the numbers were obtained:

- Arithmetic energy per MAC starts from Horowitz, ISSCC 2014 (45 nm) and is scaled to a device's
  node by the fp32 multiply+add ratio of Jouppi et al., ISCA 2021, Table 2 (7 nm); each file says
  which factor it uses and which parts are assumptions. It is arithmetic only: operand delivery
  and instruction overheads (large on CPUs) are not in it.
- On-chip SRAM energy per byte is a CACTI 7 estimate at 22 nm (CACTI's smallest node) for a plain
  SRAM array of the device's on-chip size read in 64-byte lines, using the default configuration
  shipped in the PyPI package hwcomponents-cacti 1.0.40; the same configuration at 45 nm gives
  89 pJ per 64-bit read of 1 MB and 17 pJ of 32 KB against Horowitz's 100 pJ and 20 pJ.
- DRAM energy per byte starts from the 8 pJ/bit LPDDR4 constant of Accelergy's CACTI plug-in.
"""

from pathlib import Path

DEVICES_DIR = Path(__file__).parent

__all__ = ["DEVICES_DIR"]
