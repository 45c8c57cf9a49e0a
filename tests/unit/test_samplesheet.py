from pathlib import Path

import pytest
from click.testing import CliRunner

from spatialdomains.cli import main
from spatialdomains.samplesheet import SamplesheetError, validate_samplesheet


def _sheet(tmp_path: Path, text: str) -> Path:
    (tmp_path / "a.h5ad").write_text("x")
    (tmp_path / "b.h5ad").write_text("x")
    (tmp_path / "img.tif").write_text("x")
    p = tmp_path / "samplesheet.csv"
    p.write_text(text)
    return p


def test_valid_sheet_is_normalised(tmp_path):
    p = _sheet(tmp_path, "sample,group,data,image,platform,truth,n_domains\n"
                         "s1,g,a.h5ad,img.tif,visium,ground_truth,7\n"
                         "s2,,b.h5ad,,,,\n")
    rows = validate_samplesheet(p)
    assert rows[0]["data"] == str(tmp_path / "a.h5ad")
    assert rows[0]["has_image"] and rows[0]["has_truth"] and rows[0]["n_domains"] == 7
    assert rows[1]["group"] == "s2" and rows[1]["platform"] == "other" and not rows[1]["has_image"]


def test_all_problems_reported_at_once(tmp_path):
    p = _sheet(tmp_path, "sample,group,data,platform,n_domains\n"
                         "s1,g,a.h5ad,visium,7\n"
                         "s1,g,missing.h5ad,visium,x\n"
                         "bad id,g,b.h5ad,nanopore,0\n")
    with pytest.raises(SamplesheetError) as info:
        validate_samplesheet(p)
    msg = str(info.value)
    assert "row 2, column 'sample': duplicate sample id 's1' (first seen in row 1)" in msg
    assert "row 2, column 'data': file not found" in msg and "missing.h5ad" in msg
    assert "row 2, column 'n_domains': n_domains must be a positive integer (got 'x')" in msg
    assert "row 3, column 'platform'" in msg and "nanopore" in msg
    assert "row 3, column 'sample'" in msg
    assert "row 3, column 'n_domains'" in msg
    assert len(info.value.problems) >= 6


def test_missing_column_and_unknown_column(tmp_path):
    p = _sheet(tmp_path, "sample,platfrom\ns1,visium\n")
    with pytest.raises(SamplesheetError) as info:
        validate_samplesheet(p)
    msg = str(info.value)
    assert "column 'data': required column is missing" in msg
    assert "column 'platfrom': unknown column" in msg


def test_group_must_agree_on_k(tmp_path):
    p = _sheet(tmp_path, "sample,group,data,n_domains\ns1,g,a.h5ad,7\ns2,g,b.h5ad,5\n")
    with pytest.raises(SamplesheetError, match="disagree on n_domains"):
        validate_samplesheet(p)


def test_cli_exit_code_and_stderr(tmp_path):
    p = _sheet(tmp_path, "sample,data\ns1,nothere.h5ad\n")
    res = CliRunner().invoke(main, ["validate-samplesheet", str(p)])
    assert res.exit_code == 1
    assert "row 1, column 'data': file not found" in res.output
    ok = _sheet(tmp_path, "sample,data\ns1,a.h5ad\n")
    out = tmp_path / "valid.csv"
    res = CliRunner().invoke(main, ["validate-samplesheet", str(ok), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[0].startswith("sample,group,data")


def test_reserved_group_names_and_base_dir(tmp_path):
    p = _sheet(tmp_path, "sample,group,data\ns1,pipeline_info,a.h5ad\n")
    with pytest.raises(SamplesheetError, match="reserved"):
        validate_samplesheet(p)
    elsewhere = tmp_path / "sheets"
    elsewhere.mkdir()
    moved = elsewhere / "s.csv"
    moved.write_text("sample,data\ns1,a.h5ad\n")
    with pytest.raises(SamplesheetError, match="file not found"):
        validate_samplesheet(moved)
    rows = validate_samplesheet(moved, base_dir=tmp_path)
    assert rows[0]["data"] == str(tmp_path / "a.h5ad")
