"""The batchflag-db benchmark: the O(1) flip against the user's two-statement approach.

Run it from the repository root with ``python -m bench.run`` (``--help`` for options);
``python -m bench.report`` regenerates the Markdown table and the plot from the JSON.
"""

from __future__ import annotations
