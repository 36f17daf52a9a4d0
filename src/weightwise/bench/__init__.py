"""The benchmark matrix: models x precisions/plans x (clean + noise x SNR) x peers, one typed row per
cell in a resumable JSONL file (`run_bench`, `BenchRow`).

It sits above `profile` and `compress` (every cell is traced for modeled energy, plan cells are
compressed) and below `report`, which reads its rows.
"""

from weightwise.bench.matrix import BenchConfig, Cell, run_bench
from weightwise.bench.row import ROW_VERSION, BenchRow, read_rows

__all__ = ["ROW_VERSION", "BenchConfig", "BenchRow", "Cell", "read_rows", "run_bench"]
