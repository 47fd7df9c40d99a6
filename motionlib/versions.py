"""Version numbers of what motionlib writes and later reads back, with no imports (the catalogue
reads them at start-up, before numpy or torch).

- ``DESCRIPTOR_VERSION``: the layout and computation of the search descriptor (motionlib.descriptor).
  Bump it whenever either changes: opening a library then re-describes the stored motions from the
  reference AMF in their assets.

The motion file format's version lives with its reader (motionlib.integrity: ``VERSION``, ``READS``).
"""

DESCRIPTOR_VERSION = 2
