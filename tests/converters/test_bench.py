"""ftr.bench.convert's helpers: the built-in generator writes clean data; the docs section leaves other sections alone."""

from ftr.bench import convert as bench
from ftr.converters.lint import lint_file


def test_builtin_generator_writes_a_clean_rephrase_array(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "GENERATOR", tmp_path / "absent.py")
    path = tmp_path / "r.json"
    assert bench.generate(50, 1, path) == "ftr/bench/convert.py (built-in)"
    summary = lint_file(path, system_prompt="s").summary
    assert (summary["records"], summary["valid"], summary["errors"], summary["layout"]) == (50, 50, 0, "json_array")


def test_section_is_replaced_and_other_sections_kept(tmp_path, monkeypatch):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## training\n\nkeep me\n\n## converters\n\nold figures\n\n## eval\n\nme too\n")
    monkeypatch.setattr(bench, "BENCHMARKS_MD", doc)
    result = {"rows": 10, "seconds": 1.0, "rows_per_s": 10, "peak_rss_mib": 50.0, "cpu_seconds": 0.9, "load_average_1m_before": 0.1, "lint_seconds": 0.4,
              "convert_seconds": 0.6, "input_mib": 0.1, "generator": "g", "command": "python -m ftr.bench.convert",
              "machine": {"cpu_count": 2, "platform": "Linux", "processor": "cpu", "python": "3.11"}}
    bench.write_section(result)
    bench.write_section(result)
    text = doc.read_text()
    assert "keep me" in text and "me too" in text and "old figures" not in text
    assert text.count("## converters") == 1 and text.index("## training") < text.index("## converters") < text.index("## eval")
