"""The national synthetic population (`childlookup synth --national`): a synthetic England of local
authorities, GP practices and schools, the children spread over them, each agency's records, and
the truth about which agencies hold a record about which child."""

from connectors.synthetic.national.files import (
    MANIFEST_FILE,
    RECORDS_DIR,
    TRUTH_FILE,
    NationalManifest,
    NationalSummary,
    load_national,
    load_national_records,
    load_national_truth,
    write_national,
)
from connectors.synthetic.national.population import (
    ChildTruth,
    NationalPopulation,
    generate_national,
)
from connectors.synthetic.national.records import RECORD_FILES, SCHOOL_NHS_NUMBER, HeldRecord

__all__ = [
    "MANIFEST_FILE",
    "RECORDS_DIR",
    "RECORD_FILES",
    "SCHOOL_NHS_NUMBER",
    "TRUTH_FILE",
    "ChildTruth",
    "HeldRecord",
    "NationalManifest",
    "NationalPopulation",
    "NationalSummary",
    "generate_national",
    "load_national",
    "load_national_records",
    "load_national_truth",
    "write_national",
]
