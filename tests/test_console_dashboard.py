"""The dashboard page and its server-drawn charts."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient

from callcenter.console.charts import columns, nice_ceiling, rows
from callcenter.services import Services
from tests.console_helpers import add_user, login, sample_log


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def section(page: str, element_id: str) -> str:
    found = re.search(rf'<div class="tiles" id="{element_id}">(.*?)\n</div>', page, re.S)
    assert found, element_id
    return text_of(found.group(1))


def test_the_dashboard_shows_today_and_the_period_with_links_to_the_log(
    services: Services, client: FlaskClient
) -> None:
    sample_log(services)
    add_user(services, "head", "supervisor")
    login(client, "head")
    response = client.get("/console/dashboard?from=2025-11-01&to=2025-11-27")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    expected = (
        "Звонки 7 Открыто заявок 3 Обращения, ставшие заявками 60 % 3 из 5; по регламенту — все "
        "Ошибки создания заявок 1 Срочные: принято 1 из 2 Срочные без ответа 1 "
        "Медиана ответа на срочный 32 с от первого вызова до нажатия 1 "
        "Сброшенные до выбора 1 ждут звонка: 1 Требуют внимания 4"
    )
    assert section(page, "today") == expected
    assert section(page, "period") == expected
    assert "За период: 1 ноября 2025 — 27 ноября 2025" in text_of(page)
    assert "Самые загруженные часы: 10:00–11:00, 09:00–10:00" in text_of(page)
    assert 'href="/console/?from=2025-11-01&amp;to=2025-11-27&amp;attention=true"' in page
    assert 'href="/console/?from=2025-11-27&amp;to=2025-11-27&amp;urgent_unanswered=true"' in page
    assert page.count("<svg") == 5
    assert "<title>чт 27 ноября: 7</title>" in page
    assert "<title>Новая проблема: 3 (43 %)</title>" in page
    assert "<title>8 (812) 607-77-41: 1 (14 %)</title>" in page


def test_a_bad_period_falls_back_to_thirty_days_and_says_so(
    services: Services, client: FlaskClient
) -> None:
    add_user(services, "head", "supervisor")
    login(client, "head")
    response = client.get("/console/dashboard?from=2025-11-27&to=2025-11-01")
    assert response.status_code == 400
    page = text_of(response.get_data(as_text=True))
    assert "Период задан неверно" in page
    assert "За период: 29 октября 2025 — 27 ноября 2025" in page
    assert "Обращения, ставшие заявками — 0 из 0" in page


def test_column_geometry() -> None:
    chart = columns([("a", 0, "a: 0"), ("b", 3, "b: 3"), ("c", 10, "c: 10")], width=334)
    assert [c.height for c in chart.columns][0] == 0
    tallest = chart.columns[2]
    assert tallest.y == chart.plot_top  # 10 is the top of a 0…10 axis
    assert chart.columns[1].height == round((chart.plot_bottom - chart.plot_top) * 0.3, 1)
    assert [v for _, v in chart.grid] == [0, 5, 10]
    assert chart.show_values
    assert [c.label for c in columns([(str(h), h, "") for h in range(24)], label_every=6).columns][
        :7
    ] == ["0", "", "", "", "", "", "6"]


def test_row_geometry_and_round_axes() -> None:
    chart = rows([("Консультация", 6), ("Угон ТС", 2), ("Пусто", 0)])
    assert [r.share for r in chart.rows] == ["75 %", "25 %", "0 %"]
    assert chart.rows[0].bar_width == 560 - 250 - 70
    assert chart.rows[1].bar_width == round((560 - 250 - 70) / 3, 1)
    assert chart.rows[2].bar_width == 0
    assert chart.height == 26 * 3
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 36, 180, 4999)] == [
        1, 1, 5, 10, 10, 20, 50, 200, 5000,
    ]  # fmt: skip
