"""The shop demo runs start to end and tells its query-side story."""

from __future__ import annotations

from pathlib import Path

from eventfold.examples.shop.demo import story


async def test_the_demo_shows_read_models_the_saga_a_rebuild_and_time_travel(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    await story(tmp_path / "shop.db", out=lambda text="": lines.extend(str(text).splitlines()))
    text = "\n".join(lines)
    for expected in [
        "state v4 @8: confirmed, 3x apple, 2x pear, total 2.95",  # the original story
        "order-1001 as of",
        "order_summaries [up to date at @11]",
        "query with min_position=@14",
        "status=submitted, items=6",
        "after the saga: confirmed",
        "after the saga: declined",
        "the declined order's apple was released again: sku=apple, available=1",
        "sku=pear, available=0",
        "now serving build 2 (order_summaries_v1_2)",
        "sku=pear, on_hand=2, reserved=2, available=0",
        "apple down to 1 after order order-1003",
    ]:
        assert expected in text, text
    assert text.count("to buyer@shop") == 2  # the rebuild sent no mail again
    rebuild = text[text.index("Rebuilding") : text.index("Time travel: stock")]
    assert "always the whole table" in rebuild and "[4] rows" in rebuild
    assert (tmp_path / "shop-reads.db").exists() and (tmp_path / "shop-report.db").exists()


async def test_the_demo_ends_by_forgetting_a_customer_and_verifying_the_log(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    await story(tmp_path / "shop.db", out=lambda text="": lines.extend(str(text).splitlines()))
    text = "\n".join(lines)
    tail = text[text.index("Ada asks to be forgotten") :]
    assert "name='[redacted]', email='[redacted]'" in tail
    assert "name='Bo Peep'" in tail
    assert tail.rstrip().endswith("all intact")
    assert b"Ada Lovelace" not in (tmp_path / "shop.db").read_bytes()
