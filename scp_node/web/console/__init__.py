"""The operator console at ``/console``: server-rendered pages (Jinja2) over the node's own index.

:mod:`.routes` (HTTP, sessions, CSRF), :mod:`.auth` (credentials, sessions, the sign-in seam),
:mod:`.pages` (each page's values), :mod:`.data` (SQLite queries), :mod:`.charts` (SVG),
:mod:`.dicom_view` (SR tree, overlay PNG), :mod:`.render` (templates). ``docs/operations.md``.
"""
