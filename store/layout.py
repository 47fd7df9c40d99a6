"""Names of the folders and files a library keeps next to its database (no imports: read at start-up).

Everything that names a place in a library reads it from here (``Library.blobs_dir``, ``.thumbs_dir``,
``.index_dir``, ``.tmp_dir``, ``.renders_dir``), so the layout is written down once. File names inside
the folders too: a blob's is ``BlobStore.path`` (``<sha[:2]>/<sha>.safetensors``), a thumbnail's and the
index's are below.
"""

BLOBS = "blobs"  # motion files by content hash
THUMBS = "thumbs"  # AMF thumbnails (png, gif) by content hash
INDEX = "index"  # the faiss index of descriptors and its sidecar
TMP = "tmp"  # work folders of learn, import and uploads (names carry motionlib.fsutil.TMP_MARKER)
RENDERS = "renders"  # renders made by the web app
FOLDERS = (BLOBS, THUMBS, INDEX, TMP)  # made when a library opens (renders: when the first one is written)
DATABASE = "motionlib.db"  # the SQLite catalogue (without $MOTIONLIB_DB_URL)
THUMB_KINDS = ("png", "gif")  # the thumbnails a motion may have (keys of add_motion's ``thumbnails``)


def thumb_file(sha: str, kind: str) -> str:
    """A thumbnail of the motion file ``sha`` (under ``<home>/thumbs``): named by the file's hash, never by
    the motion's name."""
    return f"{sha}.{kind}"


def index_file(version: int) -> str:
    """The saved faiss index of descriptors of this version (under ``<home>/index``)."""
    return f"descriptors-v{version}.faiss"


def index_sidecar(version: int) -> str:
    """Its JSON sidecar: the catalogue signature it was saved at, skipped and dead ids, the file's sha256."""
    return f"descriptors-v{version}.json"
