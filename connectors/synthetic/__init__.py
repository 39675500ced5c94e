"""Synthetic children and the agency records about them, for the demo, tests and benchmarks.

Every NHS number is in the range never issued to real people and every phone number in Ofcom's
drama ranges, so nothing generated here can name or reach a real child or family.
"""

from connectors.synthetic.files import (
    PopulationSummary,
    load_faults,
    load_truth,
    write_population,
)
from connectors.synthetic.noise import Fault, NoiseLevel, NoiseProfile
from connectors.synthetic.population import (
    DEFAULT_SEED,
    DEFAULT_TODAY,
    SOURCES,
    Population,
    Prevalence,
    Source,
    generate_population,
)
from connectors.synthetic.showcase import SHOWCASE_KINDS, SHOWCASE_MIN_CHILDREN, showcase

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_TODAY",
    "SHOWCASE_KINDS",
    "SHOWCASE_MIN_CHILDREN",
    "SOURCES",
    "Fault",
    "NoiseLevel",
    "NoiseProfile",
    "Population",
    "PopulationSummary",
    "Prevalence",
    "Source",
    "generate_population",
    "load_faults",
    "load_truth",
    "showcase",
    "write_population",
]
