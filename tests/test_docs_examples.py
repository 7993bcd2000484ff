"""The Python examples in the README and the docs run as written, from the repository's root
as its commands are (the STDF example reads ``../shared/data/stdf``); no broker needed."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from conftest import REPO, SHARED

DOCUMENTS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


def python_examples() -> list[tuple[str, int, str]]:
    examples = []
    for document in DOCUMENTS:
        blocks = re.findall(r"```python\n(.*?)```", (REPO / document).read_text(), re.S)
        examples += [(document, i, code) for i, code in enumerate(blocks)]
    return examples


def test_the_readme_and_the_api_docs_have_examples():
    documents = {document for document, _, _ in python_examples()}
    assert {"README.md", "docs/drift.md", "docs/stdf.md"} <= documents


@pytest.mark.parametrize("document,index,code", python_examples(),
                         ids=[f"{d}#{i}" for d, i, _ in python_examples()])
def test_a_documented_example_runs_and_prints(document, index, code, monkeypatch):
    monkeypatch.chdir(REPO)
    # the docs name the sample data as the README's commands do; STREAM_CT_SHARED_DIR may move it
    code = code.replace("../shared/", f"{SHARED}/")
    if f"{SHARED}/" in code and not SHARED.is_dir():  # as the STDF tests are (stdf_support.needs_data)
        pytest.skip(f"the example reads sample data, not found in {SHARED} (set STREAM_CT_SHARED_DIR to it)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{document} example {index}", "exec"), {"__name__": "__doc_example__"})
    assert out.getvalue().strip(), f"{document} example {index} printed nothing"
