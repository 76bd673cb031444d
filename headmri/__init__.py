"""headmri: headache classification from brain MRI with a foundation-model encoder.

The library behind the Snakemake workflow. One idea per module; rules call one function each through
the thin adapters in ``scripts/``.
"""

__version__ = "0.1.0"
