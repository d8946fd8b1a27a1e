"""The example of bindings/python/README.md runs as written, against a dead local port."""
import pathlib
import re
import socket

import edgebuf

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    with socket.socket() as s:  # a port with nothing listening: the endpoint is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = block.replace("/var/lib/app/predictions.db", str(tmp_path / "readme.db")).replace(
        "https://ingest.example.com/v1/predictions", f"http://127.0.0.1:{port}/ingest"
    )
    scope = {"key": "k"}
    exec(compile(code, str(README), "exec"), scope)
    st = scope["st"]
    assert isinstance(st, edgebuf.Status)
    assert st.logged_total == 2 and st.pending_records == 2 and st.delivered_total == 0
