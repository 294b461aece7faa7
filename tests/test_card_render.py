"""The model card and front page HTML: well-formed, self-contained, every user string escaped, links relative.

Built from hand-written card documents (no training, no AWS), so these run in milliseconds and fail on any
change to what the pages promise: the chart ids the UI and tests look for, no script, nothing from another
origin, suppressed counts never shown as numbers.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest

from mlservice.cards import svg
from mlservice.cards.render import card_html, card_path, front_page_html, relative_href

VOID = {"meta", "link", "br", "hr", "img", "input", "wbr", "col", "area", "base", "source", "track", "embed"}
# SVG's self-closing elements, as written by svg.py (<line/> etc.).
SVG_EMPTY = {"line", "circle", "rect", "path", "stop", "use", "ellipse", "polyline", "polygon"}
ALLOWED = {
    "html", "head", "meta", "link", "title", "style", "body", "div", "main", "nav", "section", "header", "footer",
    "h1", "h2", "h3", "p", "a", "span", "strong", "em", "code", "pre", "bdi", "time", "br", "ul", "li", "dl", "dt",
    "dd", "table", "thead", "tbody", "tr", "th", "td", "figure", "figcaption",
    "svg", "g", "text", "line", "rect", "circle", "path", "defs", "pattern",
}  # fmt: skip

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "A & B",
    "名前",
    "שלום עולם",
    "x" * 10_000,
    "javascript:alert(1)",
    "</svg><script>alert(2)</script>",
    "tab\tand\x01control\u202eoverride",
]


class Checker(HTMLParser):
    """Balanced tags from a whitelist, and no attribute that runs code or styles outside the <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.texts: list[str] = []
        self.hrefs: list[str] = []
        self.ids: list[str] = []
        self.charts: list[str] = []

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED:
            self.problems.append(f"unexpected <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"<{tag} {name}>")
            if name in ("href", "src", "xlink:href") and value is not None:
                self.hrefs.append(value)
            if name == "id" and value is not None:
                self.ids.append(value)
            if name == "data-chart" and value is not None:
                self.charts.append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID and tag not in SVG_EMPTY:
            self.problems.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def check_page(page: str, *, quoted: str = "") -> Checker:
    """Everything every page must satisfy; returns the parse for further checks. `quoted` is a user string the
    page may show as text (it is a string like any other there), but never as a link."""
    assert page.startswith("<!doctype html>\n")
    assert '<meta charset="utf-8">' in page
    assert '<meta name="viewport"' in page
    assert re.search(r"<title>[^<]+</title>", page)
    assert page.count("<style>") == 1
    lowered = page.lower()
    assert "<script" not in lowered
    if "javascript:" not in quoted.lower():
        assert "javascript:" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert "@import" not in lowered and "url(http" not in lowered
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert not checker.problems, checker.problems[:10]
    assert checker.stack == [], checker.stack
    assert len(checker.ids) == len(set(checker.ids)), "duplicate ids"
    for href in checker.hrefs:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", href, re.I) or href == "data:,", href
        assert not href.startswith("/"), f"absolute link {href!r} breaks under API Gateway's stage prefix"
    for fragment in re.findall(r"<svg\b.*?</svg>", page, flags=re.S):
        root = ET.fromstring(fragment)  # well-formed XML, or this raises
        assert root.get("role") == "img"
        assert root.get("data-chart")
        assert root.get("viewBox") and root.get("width") == "100%"
        assert root.get("aria-label")
        assert root.find("title") is not None
        ids = [e.get("id") for e in root.iter() if e.get("id")]
        for ref in re.findall(r"url\(#([^)]+)\)", fragment):
            assert ref in ids, f"dangling url(#{ref})"
    return checker


def binary_card() -> dict[str, Any]:
    return {
        "model": "churn",
        "version": 2,
        "status": "ready",
        "description": "Predicts whether a customer leaves within a month",
        "algorithm": "gradient_boosting",
        "task": "classification",
        "created_at": "2026-12-02T04:00:00Z",
        "created_by": {"principal": "arn:aws:iam::123456789012:user/alice", "request_id": "req-1"},
        "stages": ["staging", "production"],
        "hyperparameters": {"n_estimators": 100, "learning_rate": 0.1, "max_depth": None},
        "target": {"name": "left", "classes": ["no", "yes"], "class_counts": [900, 300]},
        "features": [
            {"name": "tenure", "kind": "numeric", "missing": 0,
             "percentiles": {"p5": 1.0, "p25": 6.0, "p50": 18.5, "p75": 40.0, "p95": None}},
            {"name": "plan", "kind": "categorical", "missing": 2, "distinct": 7, "categories": ["basic", "pro"],
             "category_counts": [700, 450], "rare_category": " __rare__", "rare_rows": 48},
            {"name": "notes", "kind": "text", "missing": 3, "terms": 120},
        ],
        "training": {"rows": 1200, "holdout_rows": 300, "test_size": 0.2, "random_state": 0, "stratified": True,
                     "source": {"type": "dataset", "dataset": "churn"}, "sha256": "ab" * 32, "seconds": 1.2,
                     "estimated_seconds": 0.9, "warnings": ["max_iter reached"], "dropped_rows_missing_target": 0},
        "metrics": {"accuracy": 0.9666667, "f1_macro": 0.95, "roc_auc": 0.93, "log_loss": 1.2e-05,
                    "cv_metric": "accuracy", "cv_folds": 5, "cv_mean": 0.95, "cv_std": 0.01, "cv_failed_folds": 0},
        "feature_importance": [
            {"feature": "tenure", "importance_mean": 0.4, "importance_std": 0.02},
            {"feature": "plan", "importance_mean": 0.1, "importance_std": 0.01},
            {"feature": "notes", "importance_mean": -0.003, "importance_std": None},
        ],
        "evaluation": {
            "min_group_size": 5,
            "confusion_matrix": {"labels": ["no", "yes"], "counts": [[220, 3], [None, 70]]},
            "roc": {"positive_class": "yes", "auc": 0.93,
                    "points": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.1, "tpr": 0.7}, {"fpr": 0.4, "tpr": 0.95},
                               {"fpr": 1.0, "tpr": 1.0}]},
            "pr": {"positive_class": "yes", "average_precision": 0.9,
                   "points": [{"recall": 0.1, "precision": 1.0}, {"recall": 0.7, "precision": 0.85},
                              {"recall": 1.0, "precision": 0.25}]},
            "partial_dependence": [
                {"feature": "tenure", "kind": "numeric", "grid": [1.0, 6.0, 18.5, 40.0],
                 "outputs": ["no", "yes"], "values": [[0.4, 0.6], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1]]},
                {"feature": "plan", "kind": "categorical", "grid": ["basic", "pro", " __rare__"],
                 "outputs": ["no", "yes"], "values": [[0.7, 0.3], [0.8, 0.2], [0.75, 0.25]]},
            ],
        },
        "serving": {"format": "onnx", "reason": "exported and verified"},
        "environment": {"python": "3.13.1", "scikit-learn": "1.9.1", "numpy": "2.4.6", "joblib": "1.5.2"},
        "digests": {"model.joblib": "cd" * 32, "model.onnx": "ef" * 32, "training data": "ab" * 32},
        "stage_history": [
            {"stage": "staging", "time": "2026-12-02T05:00:00Z", "action": "deploy", "from": None, "to": 2,
             "by": "arn:aws:iam::123456789012:user/alice", "request_id": "req-older"},
            {"stage": "production", "time": "2026-12-03T05:00:00Z", "action": "deploy", "from": 1, "to": 2,
             "by": "arn:aws:iam::123456789012:user/bob", "request_id": "req-newer"},
        ],
        "links": {"home": "/", "docs": "/docs", "json": "/models/churn/versions/2/card?format=json"},
    }  # fmt: skip


def multiclass_card() -> dict[str, Any]:
    classes = ["setosa", "versicolor", "virginica"]
    return {
        "model": "iris",
        "version": 3,
        "task": "classification",
        "algorithm": "random_forest",
        "target": {"name": "species", "classes": classes, "class_counts": [40, 40, 40]},
        "features": [
            {"name": "petal_length", "kind": "numeric", "missing": 0,
             "percentiles": {"p5": 1.3, "p25": 1.6, "p50": 4.35, "p75": 5.1, "p95": 6.1}},
        ],
        "metrics": {"accuracy": 0.97, "roc_auc": None},
        "feature_importance": [{"feature": "petal_length", "importance_mean": 0.4, "importance_std": 0.02}],
        "evaluation": {
            "min_group_size": 5,
            "confusion_matrix": {"labels": classes, "counts": [[10, 0, 0], [0, 9, None], [0, None, 9]]},
            "partial_dependence": [
                {"feature": "petal_length", "kind": "numeric", "grid": [1.3, 1.5, 4.35, 5.1, 6.1], "outputs": classes,
                 "values": [[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.05, 0.3, 0.65],
                            [0.02, 0.08, 0.9]]},
            ],
        },
    }  # fmt: skip


def regression_card() -> dict[str, Any]:
    return {
        "model": "houses",
        "version": 1,
        "task": "regression",
        "algorithm": "ridge",
        "description": "House prices",
        "stages": ["production"],
        "target": {"name": "price", "percentiles": {"p5": 1.0, "p25": 2.5, "p50": 3.1, "p75": 4.2, "p95": None}},
        "features": [
            {"name": "rooms", "kind": "numeric", "missing": 1, "percentiles": {"p5": 2, "p50": 4, "p95": 7}},
            {"name": "city", "kind": "categorical", "missing": 0, "distinct": 40, "categories": ["Paris", "Lyon"],
             "category_counts": [12345, 800], "rare_category": " __rare__", "rare_rows": 77},
        ],
        "training": {"rows": 14000, "holdout_rows": 3500, "test_size": 0.2, "stratified": False,
                     "source": {"inline": True}},
        "metrics": {"r2": 0.81, "rmse": 0.52, "mae": 0.31},
        "feature_importance": [
            {"feature": "rooms", "importance_mean": 0.5, "importance_std": 0.03},
            {"feature": "city", "importance_mean": None, "importance_std": None},
        ],
        "evaluation": {
            "min_group_size": 5,
            "residuals": {"tails_in_outer_bins": True,
                          "bins": [{"low": -2.0, "high": -1.0, "count": None}, {"low": -1.0, "high": 0.0, "count": 1200},
                                   {"low": 0.0, "high": 1.0, "count": 1500}, {"low": 1.0, "high": 2.0, "count": 0}]},
            "predicted_vs_actual": {"bins": [
                {"predicted": 1.5, "actual": 1.4, "actual_p25": 1.1, "actual_p75": 1.9, "rows": 175},
                {"predicted": 3.0, "actual": 3.2, "actual_p25": 2.7, "actual_p75": 3.6, "rows": 175},
                {"predicted": 4.5, "actual": 4.4, "actual_p25": 3.9, "actual_p75": 5.0, "rows": 175},
            ]},
            "partial_dependence": [
                {"feature": "rooms", "kind": "numeric", "grid": [2, 4, 7], "outputs": ["value"],
                 "values": [[2.1], [3.0], [4.4]]},
                {"feature": "city", "kind": "categorical", "grid": ["Paris", "Lyon", " __rare__"], "outputs": ["value"],
                 "values": [[3.1], [2.9], [3.0]]},
            ],
        },
    }  # fmt: skip


def chart_ids(page: str) -> set[str]:
    return set(re.findall(r'data-chart="([^"]+)"', page))


SECTIONS = ["header", "purpose", "data", "metrics", "charts", "hyperparameters", "serving", "stage-history", "links"]


def test_binary_card_has_every_chart_and_section():
    page = card_html(binary_card())
    checker = check_page(page)
    assert chart_ids(page) == {
        "confusion-matrix", "roc", "pr", "feature-importance", "partial-dependence-0", "partial-dependence-1",
    }  # fmt: skip
    assert [i for i in checker.ids if i in SECTIONS] == SECTIONS
    assert "<title>churn v2 — model card</title>" in page
    assert "Predicts whether a customer leaves within a month" in page
    # Binary partial dependence draws the positive class only: the other is its complement.
    assert "Probability of yes" in page
    assert "other (rare)" in page
    # Stage history newest first.
    assert page.index("req-newer") < page.index("req-older")
    assert 'class="badge production"' in page and 'class="badge staging"' in page


def test_multiclass_card_has_no_binary_curves():
    page = card_html(multiclass_card())
    check_page(page)
    assert chart_ids(page) == {"confusion-matrix", "feature-importance", "partial-dependence-0"}
    assert "ROC curve" not in page  # not even as "not available": it is for binary classifiers only
    for label in ("setosa", "versicolor", "virginica"):  # one line per class, in the legend
        assert f">{label}</text>" in page


def test_regression_card_has_regression_charts():
    page = card_html(regression_card())
    check_page(page)
    assert chart_ids(page) == {
        "residuals", "predicted-vs-actual", "feature-importance", "partial-dependence-0", "partial-dependence-1",
    }  # fmt: skip
    assert "confusion" not in page.lower()
    assert "y = x" in page
    assert "The outermost bins also count the rows beyond them." in page
    assert "12,345" in page  # a category's count, with a thousands separator


def test_charts_absent_when_their_data_is():
    card = binary_card()
    del card["evaluation"]["roc"]
    card["evaluation"]["pr"] = None
    card["feature_importance"] = []
    page = card_html(card)
    check_page(page)
    assert chart_ids(page) == {"confusion-matrix", "partial-dependence-0", "partial-dependence-1"}
    assert "Not available for this version: ROC curve, precision–recall curve, feature importance." in page

    card = regression_card()
    card["evaluation"] = None
    page = card_html(card)
    check_page(page)
    assert chart_ids(page) == {"feature-importance"}
    assert "residual histogram, predicted vs actual" in page


def test_minimal_card_renders_every_section():
    for task in ("classification", "regression", "something-new"):
        page = card_html({"model": "m", "version": 1, "task": task})
        checker = check_page(page)
        assert [i for i in checker.ids if i in SECTIONS] == SECTIONS
        assert chart_ids(page) == set()
        assert "No description was given at training." in page
        assert "not available" in page


@pytest.mark.parametrize(
    "broken",
    [
        {"features": [None, 3, {"kind": "categorical"}, {"name": "x", "kind": "numeric", "percentiles": {"p5": "a"}}]},
        {"evaluation": {"confusion_matrix": {"labels": ["a", "b"], "counts": [[1]]}}},
        {"evaluation": {"confusion_matrix": {"labels": ["a"], "counts": "nope"}}},
        {"evaluation": {"roc": {"points": [{"fpr": None, "tpr": 0.5}, {"fpr": "x"}, 7]}}},
        {"evaluation": {"residuals": {"bins": [{"low": 1, "high": 1, "count": 3}]}}},
        {"evaluation": {"predicted_vs_actual": {"bins": [{"predicted": 1e308, "actual": -1e308}]}}},
        {"evaluation": {"partial_dependence": [{"feature": "f", "grid": [1, 2], "values": [[1.0]], "outputs": []}]}},
        {"evaluation": {"partial_dependence": [{"feature": "f", "grid": ["a", 2], "values": [[float("nan")], [1]]}]}},
        {"feature_importance": [{"feature": None, "importance_mean": float("inf")}, "x"]},
        {"metrics": {"accuracy": "high", "cv_mean": None}, "hyperparameters": {"a": {"b": [1, None]}}},
        {"stage_history": [{"time": None}, {"stage": None, "from": "x"}], "stages": None, "created_by": "someone"},
        {"training": {"source": ["odd"], "test_size": "0.2", "warnings": "not a list"}, "target": {"classes": [1, 2]}},
    ],
)
def test_malformed_documents_never_crash(broken: dict[str, Any]):
    card = {"model": "m", "version": 1, "task": "classification", **broken}
    check_page(card_html(card))


def hostile_card(text: str) -> dict[str, Any]:
    card = binary_card()
    card["description"] = text
    card["algorithm"] = text
    card["target"]["classes"] = [text, "ok"]
    card["evaluation"]["confusion_matrix"]["labels"] = [text, "ok"]
    card["evaluation"]["roc"]["positive_class"] = text
    card["features"][0]["name"] = text
    card["features"][1]["categories"] = [text, "pro"]
    card["feature_importance"][0]["feature"] = text
    card["hyperparameters"] = {text: text}
    card["environment"] = {text: text}
    card["stage_history"][0]["by"] = text
    for entry in card["evaluation"]["partial_dependence"]:
        entry["feature"] = text
        entry["outputs"] = [text, text + "2"]
    card["evaluation"]["partial_dependence"][1]["grid"] = [text, "pro", " __rare__"]
    return card


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_escaped(text: str):
    for page in (
        card_html(hostile_card(text)),
        front_page_html(
            [{"name": text, "latest_version": 1, "stages": {text: 1},
              "versions": [{"version": 1, "algorithm": text, "task": text, "description": text, "metrics": {}}]}]
        ),
    ):  # fmt: skip
        checker = check_page(page, quoted=text)
        assert "<img" not in page.lower()
        if any(c in text for c in '<>&"'):
            assert text not in page
        shown = "".join(checker.texts)
        if len(text) < 100 and text.isprintable():
            assert text in shown  # escaped, not dropped: the reader sees exactly what was given
        # Long strings are shortened where they are drawn; the whole is only in tooltips.
        for fragment in re.findall(r"<text\b[^>]*>([^<]*)</text>", page):
            assert len(fragment) <= 120


def test_hostile_model_name_in_links():
    name = '"><script>x</script>/../..?a=b#c'
    page = front_page_html([{"name": name, "versions": [{"version": 1}], "stages": {}}])
    check_page(page)
    assert 'href="models/%22%3E%3Cscript%3Ex%3C%2Fscript%3E%2F..%2F..%3Fa%3Db%23c/versions/1/card"' in page
    page = card_html({"model": name, "version": 1, "task": "regression"})
    check_page(page)
    assert 'href="../../../../"' in page


def test_unicode_is_kept_and_isolated():
    page = card_html(hostile_card("名前 שלום"))
    assert "<bdi>名前 שלום</bdi>" in page
    assert ">名前 שלום</text>" in page


def test_bidi_overrides_and_controls_are_removed():
    page = card_html(hostile_card("a\u202eb\x00c\ud800d"))
    assert "\u202e" not in page and "\x00" not in page
    assert "ab\ufffdc\ufffdd" in page
    page.encode("utf-8")  # no lone surrogate left


def test_suppressed_counts_show_as_less_than_min_group_size():
    page = card_html(binary_card())
    matrix = re.search(r'<svg[^>]*data-chart="confusion-matrix".*?</svg>', page, re.S).group(0)
    root = ET.fromstring(matrix)
    texts = [t.text for t in root.iter("text")]
    assert texts.count("<5") == 1  # the null cell
    assert "3" in texts and "220" in texts and "70" in texts
    assert 'fill="url(#hatch-confusion-matrix)"' in matrix
    assert "&lt;5" in matrix

    card = regression_card()
    card["features"][1]["category_counts"] = [12345, None]
    page = card_html(card)
    residuals = re.search(r'<svg[^>]*data-chart="residuals".*?</svg>', page, re.S).group(0)
    texts = [t.text for t in ET.fromstring(residuals).iter("text")]
    assert "<5" in texts and "1,200" in texts
    assert 'Lyon</bdi> <span class="count">&lt;5</span>' in page

    card = multiclass_card()
    card["evaluation"]["min_group_size"] = 10
    page = card_html(card)
    matrix = re.search(r'<svg[^>]*data-chart="confusion-matrix".*?</svg>', page, re.S).group(0)
    assert [t.text for t in ET.fromstring(matrix).iter("text")].count("<10") == 2
    assert "fewer than 10 training rows" in page


def test_only_null_counts_are_suppressed():
    """A count that is absent or not a number is unknown ("—"), not a claim of "fewer than 5 rows"."""
    chart = svg.heatmap("m", "t", ["a", "b"], ["a", "b"], [[1, "x"], [None]], min_group_size=5)
    assert [t.text for t in ET.fromstring(chart).iter("text") if t.text in ("<5", "—")] == ["—", "<5", "—"]
    chart = svg.histogram("h", "t", [svg.HistogramBin(0, 1, "x"), svg.HistogramBin(1, 2, 7)], min_group_size=5)
    texts = [t.text for t in ET.fromstring(chart).iter("text")]
    assert "<5" not in texts and "7" in texts


def test_relative_href():
    card = "/models/iris/versions/3/card"
    assert relative_href(card, "/") == "../../../../"
    assert relative_href(card, "/docs") == "../../../../docs"
    assert relative_href(card, "/models/iris/versions/3/card?format=json") == "card?format=json"
    assert relative_href(card, "/models/iris/versions/3") == "../3"
    assert relative_href(card, "/models/iris/predict") == "../../predict"
    assert relative_href(card, "/models/other/versions/1/card") == "../../../other/versions/1/card"
    assert relative_href("/", "/models/iris/versions/3/card") == "models/iris/versions/3/card"
    assert relative_href("/", "/docs") == "docs"
    assert relative_href("/", "/") == "./"
    assert relative_href("/", "/#models") == "./#models"
    assert relative_href("/", "/a:b") == "./a:b"  # not a URL scheme
    assert relative_href("/", "docs") == "docs"
    assert card_path("a b/c", 3) == "/models/a%20b%2Fc/versions/3/card"


def test_card_links_are_relative_to_the_card():
    page = card_html(binary_card())
    checker = check_page(page)
    hrefs = set(checker.hrefs)
    assert {"../../../../", "../../../../docs", "card?format=json"} <= hrefs
    assert not [h for h in hrefs if h.startswith("/")]
    # The document's absolute links are informational only.
    assert 'href="/' not in page


def test_front_page():
    models = [
        {"name": "iris", "latest_version": 3, "stages": {"production": 3, "staging": 2},
         "versions": [
             {"version": 2, "algorithm": "logistic_regression", "task": "classification",
              "created_at": "2026-12-01T04:00:00Z", "metrics": {"accuracy": 0.9333333}, "description": "older"},
             {"version": 3, "algorithm": "random_forest", "task": "classification",
              "created_at": "2026-12-02T04:00:00Z", "metrics": {"accuracy": 0.97}, "description": "newer"},
         ]},
        {"name": "houses", "latest_version": 1, "stages": {},
         "versions": [{"version": 1, "algorithm": "ridge", "task": "regression", "metrics": {"r2": 0.8123}}]},
    ]  # fmt: skip
    page = front_page_html(models)
    checker = check_page(page)
    assert "<title>Serverless ML — models</title>" in page
    assert "docs" in checker.hrefs
    assert {"models/iris/versions/3/card", "models/iris/versions/2/card", "models/houses/versions/1/card"} <= set(
        checker.hrefs
    )
    assert page.index("models/iris/versions/3/card") < page.index("models/iris/versions/2/card")  # newest first
    assert "0.97" in page and "0.9333" in page and "0.8123" in page
    row3 = re.search(r"<tr><td><a href=\"models/iris/versions/3/card\">.*?</tr>", page).group(0)
    assert "badge production" in row3 and "badge staging" not in row3
    row2 = re.search(r"<tr><td><a href=\"models/iris/versions/2/card\">.*?</tr>", page).group(0)
    assert "badge staging" in row2 and "badge production" not in row2


def test_front_page_docs_url():
    assert 'href="docs"' in front_page_html([])
    assert 'href="api/docs"' in front_page_html([], docs_url="/api/docs")
    page = front_page_html([], docs_url="javascript:alert(1)")
    check_page(page)
    assert 'href="docs"' in page


def test_empty_front_page_explains_how_to_train():
    page = front_page_html([])
    check_page(page)
    assert "No models yet" in page
    expected = """curl -s -X POST $API/models/iris/versions -d '{"algorithm": "logistic_regression", "data": {"dataset": "iris"}}'"""
    checker = Checker()
    checker.feed(page)
    assert expected in "".join(checker.texts)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.97, "0.97"),
        (0.9666667, "0.9667"),
        (1.2e-05, "1.2e-05"),
        (12345, "12,345"),
        (12345.678, "12,346"),
        (120.0, "120"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (0.0, "0"),
        (0, "0"),
        (None, "—"),
        (True, "yes"),
        (float("nan"), "NaN"),
        (3e20, "3e+20"),
    ],
)
def test_format_number(value: object, shown: str):
    assert svg.format_number(value) == shown


def test_nice_ticks():
    assert svg.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(0.03, 0.97) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(-2.0, 2.0) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert svg.nice_ticks(0, 12345) == [0, 5000, 10000, 15000]
    assert svg.nice_ticks(5.0, 5.0)[0] < 5.0 < svg.nice_ticks(5.0, 5.0)[-1]
    ticks = svg.nice_ticks(0.1, 0.7)
    assert [svg.format_tick(t, ticks[1] - ticks[0]) for t in ticks] == ["0", "0.2", "0.4", "0.6", "0.8"]
    assert svg.format_tick(10000, 5000) == "10,000"


def test_every_chart_is_valid_standalone_svg():
    """Each primitive on its own, including degenerate input."""
    charts = [
        svg.bar_chart("b", "t", [svg.Bar("a", 1.0, 0.1), svg.Bar("b", -0.5), svg.Bar("c", None)], value_label="v"),
        svg.bar_chart("b0", "t", []),
        svg.heatmap("h", "t", ["a"], ["a"], [[None]], min_group_size=None),
        svg.line_chart("l", "t", [svg.Series("s", [(1, 1)])]),
        svg.line_chart("l0", "t", []),
        svg.category_chart("c", "t", ["x", "y"], ["o1", "o2"], [[1, 2], [None, 3]]),
        svg.predicted_vs_actual("p", "t", [svg.BinPoint(1, 1)]),
        svg.histogram("hi", "t", [svg.HistogramBin(0, 1, None)], min_group_size=5),
    ]
    for chart in charts:
        root = ET.fromstring(chart)
        assert root.tag == "svg" and root.get("data-chart")
    assert "hidden" in [t.text for t in ET.fromstring(charts[2]).iter("text")]


def test_render_is_deterministic_and_input_is_not_modified():
    card = binary_card()
    before = copy.deepcopy(card)
    assert card_html(card) == card_html(card)
    assert card == before
