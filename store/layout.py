"""Names of the files a library keeps next to its database (no imports: read at start-up)."""


def index_file(version: int) -> str:
    """The saved faiss index of descriptors of this version (under ``<home>/index``)."""
    return f"descriptors-v{version}.faiss"


def index_sidecar(version: int) -> str:
    """Its JSON sidecar: the catalogue signature it was saved at, skipped and dead ids."""
    return f"descriptors-v{version}.json"
