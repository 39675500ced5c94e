"""Education connector over a folder of DfE Common Transfer Files (CTF XML).

`create_ctf_app` serves the folder; `read_ctf` reads one file; `write_ctf_folder` and
`write_school_contacts` turn connector records (the synthetic population's) into the files the
connector reads. See docs/connectors.md, "Education: Common Transfer Files".
"""

from connectors.ctf.app import EDUCATION_CTF, create_ctf_app
from connectors.ctf.backend import CtfFolderBackend
from connectors.ctf.folder import CtfFileStatus
from connectors.ctf.reader import CtfFileError, TransferFile, read_ctf
from connectors.ctf.schools import SchoolContacts, SchoolContactsError, load_school_contacts
from connectors.ctf.writer import (
    school_contacts,
    write_ctf,
    write_ctf_folder,
    write_school_contacts,
)

__all__ = [
    "EDUCATION_CTF",
    "CtfFileError",
    "CtfFileStatus",
    "CtfFolderBackend",
    "SchoolContacts",
    "SchoolContactsError",
    "TransferFile",
    "create_ctf_app",
    "load_school_contacts",
    "read_ctf",
    "school_contacts",
    "write_ctf",
    "write_ctf_folder",
    "write_school_contacts",
]
