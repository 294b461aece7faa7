"""HTML of a model card and of the front page, from the JSON-ready documents mlservice.cards.document builds.

Pure functions, standard library only: the pages are served by a function without scikit-learn or numpy. The
service sends `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:`,
so a page is one self-contained document: all styling in one <style> element, charts as inline SVG, no
script, no style attributes, no event handlers, nothing from another origin (it also works offline and
prints).

Every key of a document may be missing, null or of the wrong type (old versions, hand-edited metadata), and
every string in it may come from a user: each is escaped, cleaned of characters HTML and XML cannot hold,
bidi-isolated (<bdi>) and shortened for display with the full text as a tooltip. The documents were
privacy-filtered when stored; nothing is shown that they do not hold.

Links are relative to the page's own path, never absolute: API Gateway serves the API under /<stage>/, which
the page cannot know, and a relative link resolves under whatever prefix the page itself was served from.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from mlservice.cards import svg
from mlservice.cards.svg import clean, esc, format_number, number, shorten

FRONT_PAGE_PATH = "/"
DOCS_PATH = "/docs"
IMPORTANCE_SHOWN = 25  # bars; a wide table's tail is listed as a count
CATEGORIES_SHOWN = 8  # per categorical feature in the schema table
CLASSES_SHOWN = 50
# As the README writes it, API being the service's address.
TRAIN_EXAMPLE = """curl -s -X POST $API/models/iris/versions -d '{"algorithm": "logistic_regression", "data": {"dataset": "iris"}}'"""

_ISO_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_UNBROKEN = re.compile(r"\S{30,}")
_STAGE_ORDER = {"production": 0, "staging": 1}
_METRIC_NAMES = {
    "accuracy": ("Accuracy", True),
    "balanced_accuracy": ("Balanced accuracy", True),
    "f1_macro": ("F1 (macro average)", True),
    "precision_macro": ("Precision (macro average)", True),
    "recall_macro": ("Recall (macro average)", True),
    "log_loss": ("Log loss", False),
    "roc_auc": ("ROC AUC", True),
    "r2": ("R²", True),
    "rmse": ("Root mean squared error", False),
    "mae": ("Mean absolute error", False),
}

CSS = """
:root{--ink:#1f2933;--muted:#52606d;--line:#e4e7eb;--soft:#f5f7fa;--accent:#0b5cad}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#fff;color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
.page{max-width:70rem;margin:0 auto;padding:1.25rem 1.25rem 3rem}
a{color:var(--accent);text-underline-offset:2px}
a:hover{text-decoration-thickness:2px}
nav.top{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;font-size:.9rem;padding-bottom:.75rem;border-bottom:1px solid var(--line)}
nav.toc{display:flex;flex-wrap:wrap;gap:.25rem 1rem;font-size:.85rem;margin:1rem 0 0}
nav.toc a{color:var(--muted)}
h1{font-size:1.9rem;line-height:1.2;margin:.25rem 0 .5rem;overflow-wrap:anywhere}
h1 .version{color:var(--muted);font-weight:400}
h2{font-size:1.3rem;line-height:1.3;margin:0 0 .75rem;padding-bottom:.35rem;border-bottom:1px solid var(--line);overflow-wrap:anywhere}
h3{font-size:1.05rem;margin:1.5rem 0 .5rem}
section{margin:2.25rem 0}
section#header{margin-top:1.25rem}
.eyebrow{margin:0;color:var(--muted);font-size:.8rem;font-weight:600;letter-spacing:.06em;text-transform:uppercase}
p{margin:.5rem 0}
.muted,.note{color:var(--muted)}
.note{font-size:.9rem}
.na{color:var(--muted);font-weight:400;font-size:.95rem}
.badges{display:flex;flex-wrap:wrap;gap:.35rem;margin:.5rem 0}
.badge{display:inline-block;padding:.05rem .6rem;border-radius:999px;font-size:.78rem;font-weight:600;line-height:1.6;border:1px solid #cbd2d9;background:#eef2f7;color:#323f4b;white-space:nowrap;max-width:100%;overflow:hidden;text-overflow:ellipsis}
.badge.production{background:#e3f4ea;color:#14532d;border-color:#9fd3b4}
.badge.staging{background:#fdf2dc;color:#6b4200;border-color:#efcb84}
.badge.status{background:#fde8e8;color:#7f1d1d;border-color:#f5b5b5}
dl.facts{display:grid;grid-template-columns:minmax(8rem,max-content) 1fr;gap:.3rem 1.5rem;margin:.75rem 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;min-width:0;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto;margin:.5rem 0}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.45rem .65rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-weight:600;color:var(--muted);background:var(--soft);border-bottom-color:#cbd2d9}
td,p,li{overflow-wrap:break-word}
.brk{overflow-wrap:anywhere}
.nw{white-space:nowrap}
td .badges{margin:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:.88em}
.hash{word-break:break-all;overflow-wrap:anywhere}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.75rem 1rem;white-space:pre-wrap;word-break:break-all}
ul.plain{margin:.25rem 0;padding-left:1.2rem}
ul.warnings li{color:#7a4b00}
.summary .sep{color:#9aa5b1;padding:0 .3rem}
.summary .count{color:var(--muted);font-variant-numeric:tabular-nums}
.privacy{background:var(--soft);border-left:3px solid #9aa5b1;padding:.5rem .85rem;border-radius:0 6px 6px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,27rem),1fr));gap:1.25rem}
figure{margin:0;padding:.85rem 1rem 1rem;border:1px solid var(--line);border-radius:8px;background:#fff;break-inside:avoid;min-width:0}
figcaption{margin:0 0 .6rem;font-size:.88rem;color:var(--muted);overflow-wrap:anywhere}
figcaption strong{display:block;font-size:1rem;color:var(--ink)}
figure .note{margin:.5rem 0 0}
svg.chart{display:block;width:100%;height:auto;max-width:40rem;margin:0 auto}
.versions td:first-child{white-space:nowrap}
.model{margin:2rem 0}
footer{margin-top:3rem;padding-top:.75rem;border-top:1px solid var(--line);color:var(--muted);font-size:.85rem}
@media (max-width:40rem){body{font-size:14px}dl.facts{grid-template-columns:1fr;gap:0}dl.facts dd{margin-bottom:.4rem}}
@media print{
body{font-size:10pt;color:#000}
.page{max-width:none;padding:0}
nav.top,nav.toc{display:none}
a{color:inherit;text-decoration:none}
h2,h3{break-after:avoid}
figure,tr{break-inside:avoid}
.charts{grid-template-columns:1fr 1fr}
thead th{background:none}
.table-wrap{overflow:visible}
}
""".strip()


# --- links ----------------------------------------------------------------------------------------------


def relative_href(page: str, target: str) -> str:
    """The href that leads from the page served at path `page` to the service path `target`, relative so it
    also holds under API Gateway's /<stage>/ prefix: relative_href("/models/m/versions/3/card", "/docs") is
    "../../../../docs". Both paths are as the service routes them (starting with "/"); a target that is not
    such a path is returned unchanged."""
    if not target.startswith("/") or target.startswith("//"):
        return target
    cut = min((i for i in (target.find("?"), target.find("#")) if i >= 0), default=len(target))
    path, rest = target[:cut], target[cut:]
    base = page.split("?", 1)[0].split("#", 1)[0].split("/")[:-1]
    *directory, name = path.split("/")
    common = 0
    while common < min(len(base), len(directory)) and base[common] == directory[common]:
        common += 1
    href = "/".join([".."] * (len(base) - common) + directory[common:] + [name])
    if not href:
        return "./" + rest
    if ":" in href.split("/", 1)[0]:  # "a:b/…" would read as a URL scheme
        href = "./" + href
    return href + rest


def card_path(model: object, version: object) -> str:
    """The service path of a version's card page."""
    return f"/models/{quote(str(model), safe='')}/versions/{quote(str(version), safe='')}/card"


def _docs_href(docs_url: str) -> str:
    """docs_url as an href from the front page: a service path made relative, a web address kept, anything
    else (a javascript: or data: URL) replaced by the service's own docs."""
    if not isinstance(docs_url, str) or not docs_url.strip():
        return relative_href(FRONT_PAGE_PATH, DOCS_PATH)
    docs_url = docs_url.strip()
    if docs_url.startswith("/") and not docs_url.startswith("//"):
        return relative_href(FRONT_PAGE_PATH, docs_url)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", docs_url)
    if scheme is None:
        return docs_url if not docs_url.startswith("//") else relative_href(FRONT_PAGE_PATH, DOCS_PATH)
    if scheme.group(1).lower() in ("http", "https"):
        return docs_url
    return relative_href(FRONT_PAGE_PATH, DOCS_PATH)


# --- small pieces ---------------------------------------------------------------------------------------


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _user(value: object, limit: int = 80) -> str:
    """A user's string in HTML: escaped, bidi-isolated so right-to-left text cannot reorder what surrounds it,
    shortened with the whole of it as a tooltip."""
    full = clean(value)
    shown = shorten(full, limit)
    # Only a very long unbroken run may break anywhere: allowing it everywhere would let a table squeeze
    # "classification" into "classificati/on".
    css = ' class="brk"' if _UNBROKEN.search(shown) else ""
    if shown == full:
        return f"<bdi{css}>{html.escape(full)}</bdi>"
    return f'<bdi{css} title="{html.escape(full)}">{html.escape(shown)}</bdi>'


def _num(value: object) -> str:
    return html.escape(format_number(value))


def _count(value: object, suppressed: str) -> str:
    """A row count from the document; null means it was suppressed for privacy."""
    if value is None:
        return html.escape(suppressed)
    return _num(value)


def _time(value: object) -> str:
    if not isinstance(value, str) or not value:
        return "—"
    match = _ISO_TIME.match(value)
    if match is None:
        return _user(value, 40)
    zone = match.group(4) or ""
    clock = f"{match.group(2)}{match.group(3) or ''}" + (
        " UTC" if zone in ("Z", "+00:00", "+0000") else f" {zone}" if zone else ""
    )
    # Date and time each kept whole: a narrow column wraps between them, not inside "2026-12-02".
    return f'<time datetime="{esc(value)}"><span class="nw">{esc(match.group(1))}</span> <span class="nw">{esc(clock)}</span></time>'


def _badge(stage: object) -> str:
    name = clean(stage)
    kind = name if name in _STAGE_ORDER else "other"
    return f'<span class="badge {kind}">{_user(name, 40)}</span>'


def _badges(stages: Iterable[object]) -> str:
    ordered = sorted((s for s in stages if s is not None), key=lambda s: (_STAGE_ORDER.get(str(s), 9), str(s)))
    return "".join(_badge(s) for s in ordered)


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _value(value: object, limit: int = 120) -> str:
    """A value of unknown type: numbers formatted, strings as text, anything else as JSON."""
    if value is None or isinstance(value, bool | int | float):
        return _num(value)
    if isinstance(value, str):
        return _user(value, limit)
    return f"<code>{_user(_json_text(value), limit)}</code>"


def _facts(pairs: Iterable[tuple[str, str | None]]) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in pairs if v is not None)
    return f'<dl class="facts">{rows}</dl>' if rows else ""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (), css: str = "") -> str:
    numeric = set(numeric)

    def cell(tag: str, i: int, content: str) -> str:
        return f'<{tag} class="num">{content}</{tag}>' if i in numeric else f"<{tag}>{content}</{tag}>"

    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    css_attr = f' class="{css}"' if css else ""
    return f'<div class="table-wrap"><table{css_attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(section_id: str, title: str, content: str, *, available: bool = True) -> str:
    suffix = ' <span class="na">— not available</span>' if not available else ""
    return f'<section id="{section_id}"><h2>{html.escape(title)}{suffix}</h2>{content}</section>'


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light">\n'
        '<meta name="referrer" content="no-referrer">\n'
        # Without it a browser asks for /favicon.ico, outside the API's stage prefix.
        '<link rel="icon" href="data:,">\n'
        f"<title>{html.escape(shorten(clean(title), 200))}</title>\n"
        f"<style>\n{CSS}\n</style>\n</head>\n<body>\n"
        f'<div class="page">\n{body}\n</div>\n</body>\n</html>\n'
    )


def _percentiles(percentiles: object) -> str:
    items = _dict(percentiles)
    if not items:
        return '<span class="muted">—</span>'

    def order(key: str) -> tuple[float, str]:
        value = number(float(key[1:])) if re.fullmatch(r"p\d+(\.\d+)?", key) else None
        return (value if value is not None else 1e9, key)

    parts = [f"{_user(k, 12)} {_num(number(v))}" for k, v in sorted(items.items(), key=lambda kv: order(str(kv[0])))]
    return '<span class="summary">' + '<span class="sep">·</span>'.join(parts) + "</span>"


def _privacy_size(card: Mapping[str, Any]) -> object:
    return _dict(card.get("evaluation")).get("min_group_size")


# --- card sections --------------------------------------------------------------------------------------


def _header(card: Mapping[str, Any]) -> str:
    model, version = card.get("model"), card.get("version")
    stages = [s for s in _list(card.get("stages")) if s is not None]
    status = card.get("status")
    badges = _badges(stages)
    if status not in (None, "ready"):
        badges += f'<span class="badge status">{_user(status, 30)}</span>'
    if not stages:
        badges += '<span class="muted note">Not serving any stage</span>'
    created_by = card.get("created_by")
    principal, request_id = (
        (_dict(created_by).get("principal"), _dict(created_by).get("request_id"))
        if isinstance(created_by, Mapping)
        else (created_by, None)
    )
    facts = _facts(
        [
            ("Algorithm", f"<code>{_user(card['algorithm'], 60)}</code>" if card.get("algorithm") is not None else "—"),
            ("Task", _user(card["task"], 40) if card.get("task") is not None else "—"),
            ("Created", _time(card.get("created_at"))),
            ("Created by", f'<span class="mono hash">{_user(principal, 200)}</span>' if principal is not None else "—"),
            (
                "Request id",
                f'<span class="mono hash">{_user(request_id, 100)}</span>' if request_id is not None else None,
            ),
        ]
    )
    return (
        '<section id="header"><p class="eyebrow">Model card</p>'
        f'<h1>{_user(model, 120)} <span class="version">version {_user(version, 20)}</span></h1>'
        f'<div class="badges">{badges}</div>{facts}</section>'
    )


def _purpose(card: Mapping[str, Any]) -> str:
    description = card.get("description")
    if isinstance(description, str) and description.strip():
        return _section("purpose", "Purpose", f"<p>{_user(description, 2000)}</p>")
    return _section("purpose", "Purpose", '<p class="muted">No description was given at training.</p>')


def _source(source: object) -> str:
    if not isinstance(source, Mapping):
        return "—" if source is None else _value(source)
    if source.get("dataset") is not None:
        return f"built-in dataset <code>{_user(source['dataset'], 60)}</code>"
    if source.get("inline") or source.get("type") == "inline":
        shape = f" ({_user(source['format'], 20)})" if isinstance(source.get("format"), str) else ""
        return f"rows sent inline with the training request{shape}"
    if source.get("s3_key") is not None:
        size = f", {_num(source['bytes'])} bytes" if number(source.get("bytes")) is not None else ""
        return f"S3 object <code>{_user(source['s3_key'], 160)}</code>{size}"
    return "; ".join(f"{_user(k, 30)}: {_value(v, 100)}" for k, v in source.items()) or "—"


def _feature_summary(feature: Mapping[str, Any], suppressed: str) -> str:
    kind = feature.get("kind")
    if kind == "numeric" or (kind is None and "percentiles" in feature):
        return _percentiles(feature.get("percentiles"))
    if kind == "categorical":
        names, counts = _list(feature.get("categories")), _list(feature.get("category_counts"))
        parts = []
        for i, name in enumerate(names[:CATEGORIES_SHOWN]):
            count = counts[i] if i < len(counts) else None
            parts.append(f'{_user(name, 40)} <span class="count">{_count(count, suppressed)}</span>')
        if len(names) > CATEGORIES_SHOWN:
            parts.append(f'<span class="muted">{len(names) - CATEGORIES_SHOWN:,} more</span>')
        text = '<span class="sep">·</span>'.join(parts) if parts else '<span class="muted">no category shown</span>'
        extra = []
        if feature.get("distinct") is not None:
            extra.append(f"{_num(feature['distinct'])} distinct")
        if feature.get("rare_rows") is not None:
            extra.append(f"other (rare) values: {_num(feature['rare_rows'])} rows")
        tail = f'<br><span class="muted">{"; ".join(extra)}</span>' if extra else ""
        return f'<span class="summary">{text}</span>{tail}'
    if kind == "text":
        return f"{_num(feature['terms'])} terms in the vocabulary" if feature.get("terms") is not None else "—"
    return "—"


def _privacy_note(min_group_size: object) -> str:
    size = number(min_group_size)
    if size is None:
        rule, shown_as = "too few training rows", "hidden"
    else:
        shown = format_number(int(size) if size.is_integer() else size)
        rule, shown_as = f"fewer than {shown} training rows", f"“&lt;{shown}”"
    return (
        f'<p class="privacy note">Privacy: a value seen in {rule} is never shown. Rarer categories are pooled into '
        "one “other (rare)” bucket, a percentile without enough rows on each side is left out (—), and a count of "
        f"fewer rows, in a table or a chart, is shown as {shown_as}.</p>"
    )


def _data(card: Mapping[str, Any]) -> str:
    training = _dict(card.get("training"))
    suppressed, _ = svg.suppressed_label(_privacy_size(card))
    parts = []
    if training:
        test_size = number(training.get("test_size"))
        seconds = number(training.get("seconds"))
        estimated = number(training.get("estimated_seconds"))
        duration = None
        if seconds is not None:
            duration = f"{_num(seconds)} s" + (
                f' <span class="muted">(estimated {_num(estimated)} s)</span>' if estimated is not None else ""
            )
        stratified = training.get("stratified")
        parts.append(
            _facts(
                [
                    ("Training rows", _num(training["rows"]) if "rows" in training else None),
                    ("Holdout rows", _num(training["holdout_rows"]) if "holdout_rows" in training else None),
                    ("Test split", f"{format_number(test_size * 100)}% held out" if test_size is not None else None),
                    ("Stratified", ("yes, by class" if stratified else "no") if isinstance(stratified, bool) else None),
                    ("Random state", _value(training["random_state"]) if "random_state" in training else None),
                    (
                        "Rows without a target",
                        f"{_num(training['dropped_rows_missing_target'])} dropped"
                        if training.get("dropped_rows_missing_target") is not None
                        else None,
                    ),
                    ("Source", _source(training.get("source")) if "source" in training else None),
                    (
                        "Data SHA-256",
                        f'<code class="hash">{_user(training["sha256"], 200)}</code>'
                        if training.get("sha256")
                        else None,
                    ),
                    ("Training time", duration),
                ]
            )
        )
        warnings = [w for w in _list(training.get("warnings")) if w is not None]
        if warnings:
            items = "".join(f"<li>{_user(w, 400)}</li>" for w in warnings[:20])
            more = f'<li class="muted">{len(warnings) - 20:,} more</li>' if len(warnings) > 20 else ""
            parts.append(f'<h3>Training warnings</h3><ul class="plain warnings">{items}{more}</ul>')
    parts.append(_target(_dict(card.get("target")), suppressed))
    preprocessing = _dict(card.get("preprocessing"))
    if preprocessing:
        parts.append("<h3>Preprocessing</h3>" + _facts((clean(k), _value(v, 300)) for k, v in preprocessing.items()))
    features = [f for f in _list(card.get("features")) if isinstance(f, Mapping)]
    parts.append("<h3>Features</h3>" + _privacy_note(_privacy_size(card)))
    if features:
        rows = [
            [
                _user(f.get("name"), 60),
                _user(f.get("kind") or "—", 20),
                _num(f.get("missing")),
                _feature_summary(f, suppressed),
            ]
            for f in features
        ]
        parts.append(_table(["Feature", "Kind", "Missing", "Summary"], rows, numeric=[2], css="schema"))
    else:
        parts.append('<p class="muted">The feature schema is not available.</p>')
    available = bool(training or features or card.get("target"))
    return _section("data", "Training data", "".join(parts), available=available)


def _target(target: Mapping[str, Any], suppressed: str) -> str:
    if not target:
        return ""
    name = (
        f"<p>Target column: <strong>{_user(target.get('name'), 80)}</strong></p>"
        if target.get("name") is not None
        else ""
    )
    classes = _list(target.get("classes"))
    if classes:
        counts = _list(target.get("class_counts"))
        rows = [
            [_user(c, 80), _count(counts[i], suppressed) if i < len(counts) else "—"]
            for i, c in enumerate(classes[:CLASSES_SHOWN])
        ]
        more = (
            f'<p class="note">and {len(classes) - CLASSES_SHOWN:,} more classes</p>'
            if len(classes) > CLASSES_SHOWN
            else ""
        )
        return f"<h3>Target</h3>{name}" + _table(["Class", "Training rows"], rows, numeric=[1]) + more
    if target.get("percentiles") is not None:
        return f"<h3>Target</h3>{name}<p>Distribution: {_percentiles(target.get('percentiles'))}</p>"
    return f"<h3>Target</h3>{name}"


def _metrics(card: Mapping[str, Any]) -> str:
    metrics = _dict(card.get("metrics"))
    plain = [(k, v) for k, v in metrics.items() if not str(k).startswith("cv_")]
    if not metrics:
        return _section("metrics", "Metrics", "", available=False)
    parts = []
    holdout = _dict(card.get("training")).get("holdout_rows")
    if plain:
        rows = []
        for key, value in plain:
            name, higher = _METRIC_NAMES.get(str(key), (clean(key).replace("_", " ").capitalize(), None))
            better = "" if higher is None else ("higher is better" if higher else "lower is better")
            rows.append(
                [f'{html.escape(name)} <code class="muted">{_user(key, 40)}</code>', _value(value), html.escape(better)]
            )
        where = f"the {_num(holdout)} holdout rows" if number(holdout) is not None else "the holdout rows"
        parts.append(f'<p class="note">Measured on {where}, which training never saw.</p>')
        parts.append(_table(["Metric", "Value", ""], rows, numeric=[1], css="metrics"))
    if "cv_metric" in metrics or "cv_mean" in metrics:
        folds, metric = metrics.get("cv_folds"), metrics.get("cv_metric")
        mean, std, failed = metrics.get("cv_mean"), metrics.get("cv_std"), number(metrics.get("cv_failed_folds"))
        text = (
            (f"{_num(folds)}-fold " if number(folds) is not None else "")
            + "cross-validation on the training rows"
            + (f" ({_user(metric, 30)})" if metric is not None else "")
            + f": mean {_num(mean)}"
            + (f" ± {_num(std)}" if number(std) is not None else "")
            + (f", {_num(int(failed))} failed folds" if failed else "")
            + "."
        )
        parts.append(f"<p>{text[0].upper() + text[1:]}</p>")
    known = {"cv_metric", "cv_folds", "cv_mean", "cv_std", "cv_failed_folds"}
    others = [(k, v) for k, v in metrics.items() if str(k).startswith("cv_") and k not in known]
    if others:
        parts.append(_facts((clean(k), _value(v)) for k, v in others))
    return _section("metrics", "Metrics", "".join(parts))


def _figure(chart: str, caption: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f"<figure>{caption}{chart}{note_html}</figure>"


def _caption(title: str, detail: str = "") -> str:
    return f"<figcaption><strong>{html.escape(title)}</strong>{detail}</figcaption>"


def _points(value: object, x_key: str, y_key: str) -> list[tuple[object, object]]:
    return [(p.get(x_key), p.get(y_key)) for p in _list(value) if isinstance(p, Mapping)]


def _charts(card: Mapping[str, Any]) -> str:
    task = card.get("task")
    evaluation = _dict(card.get("evaluation"))
    min_group_size = evaluation.get("min_group_size")
    target = _dict(card.get("target"))
    target_name = target.get("name")
    figures: list[str] = []
    missing: list[str] = []
    confusion = _dict(evaluation.get("confusion_matrix"))
    labels = _list(confusion.get("labels"))
    counts = [_list(row) for row in _list(confusion.get("counts"))]
    binary = len(_list(target.get("classes"))) == 2 or len(labels) == 2 or bool(evaluation.get("roc"))

    if labels and counts:
        chart = svg.heatmap(
            "confusion-matrix",
            "Confusion matrix: actual class by predicted class",
            labels,
            labels,
            counts,
            min_group_size=min_group_size,
        )
        figures.append(
            _figure(
                chart,
                _caption("Confusion matrix", " Holdout rows by actual class (rows) and predicted class (columns)."),
            )
        )
    elif task == "classification":
        missing.append("confusion matrix")

    for key, title, axes, score, reference in (
        ("roc", "ROC curve", ("fpr", "tpr", "False positive rate", "True positive rate"), ("auc", "AUC"), True),
        (
            "pr",
            "Precision–recall curve",
            ("recall", "precision", "Recall", "Precision"),
            ("average_precision", "Average precision"),
            False,
        ),
    ):
        curve = _dict(evaluation.get(key))
        points = _points(curve.get("points"), axes[0], axes[1])
        if points:
            detail = f" {score[1]} {_num(number(curve.get(score[0])))}" + (
                f"; positive class {_user(curve['positive_class'], 40)}"
                if curve.get("positive_class") is not None
                else ""
            )
            chart = svg.line_chart(
                key,
                title,
                [svg.Series("model", points)],
                x_label=axes[2],
                y_label=axes[3],
                x_domain=(0.0, 1.0),
                y_domain=(0.0, 1.0),
                reference=svg.Series("chance", [(0.0, 0.0), (1.0, 1.0)]) if reference else None,
            )
            figures.append(_figure(chart, _caption(title, detail)))
        elif task == "classification" and binary:
            missing.append(title if key == "roc" else title[0].lower() + title[1:])

    residuals = _dict(evaluation.get("residuals"))
    bins = [b for b in _list(residuals.get("bins")) if isinstance(b, Mapping)]
    if bins:
        chart = svg.histogram(
            "residuals",
            "Residuals: actual minus predicted",
            [svg.HistogramBin(b.get("low"), b.get("high"), b.get("count")) for b in bins],
            x_label="Actual − predicted",
            y_label="Holdout rows",
            min_group_size=min_group_size,
        )
        note = "The outermost bins also count the rows beyond them." if residuals.get("tails_in_outer_bins") else ""
        figures.append(
            _figure(chart, _caption("Residuals", " Holdout errors, actual minus predicted; 0 is marked."), note)
        )
    elif task == "regression":
        missing.append("residual histogram")

    versus = _dict(evaluation.get("predicted_vs_actual"))
    points = [b for b in _list(versus.get("bins")) if isinstance(b, Mapping)]
    if points:
        what = f" {shorten(clean(target_name), 40)}" if target_name is not None else ""
        chart = svg.predicted_vs_actual(
            "predicted-vs-actual",
            "Predicted against actual values",
            [
                svg.BinPoint(
                    b.get("predicted"), b.get("actual"), b.get("actual_p25"), b.get("actual_p75"), b.get("rows")
                )
                for b in points
            ],
            x_label=f"Predicted{what} (bin median)",
            y_label=f"Actual{what}",
        )
        figures.append(
            _figure(
                chart,
                _caption(
                    "Predicted vs actual",
                    " Holdout rows binned by prediction: median actual value and its middle half.",
                ),
            )
        )
    elif task == "regression":
        missing.append("predicted vs actual")

    importance = [i for i in _list(card.get("feature_importance")) if isinstance(i, Mapping)]
    if importance:
        score = {"classification": "accuracy", "regression": "R²"}.get(str(task), "score")
        shown = importance[:IMPORTANCE_SHOWN]
        chart = svg.bar_chart(
            "feature-importance",
            "Permutation feature importance",
            [svg.Bar(i.get("feature"), i.get("importance_mean"), i.get("importance_std")) for i in shown],
            value_label=f"Drop in {score} when the feature is shuffled",
        )
        note = (
            f"{len(importance) - len(shown):,} less important features are not drawn."
            if len(importance) > len(shown)
            else ""
        )
        figures.append(
            _figure(
                chart,
                _caption(
                    "Feature importance", " Permutation importance on the holdout rows, mean ± standard deviation."
                ),
                note,
            )
        )
    else:
        missing.append("feature importance")

    rare = {
        clean(f.get("name")): f.get("rare_category")
        for f in _list(card.get("features"))
        if isinstance(f, Mapping) and f.get("rare_category") is not None
    }
    for index, entry in enumerate(_list(evaluation.get("partial_dependence"))):
        if isinstance(entry, Mapping):
            figure = _partial_dependence(index, entry, task, target_name, rare)
            if figure:
                figures.append(figure)

    parts = []
    if figures:
        parts.append(f'<div class="charts">{"".join(figures)}</div>')
    if missing:
        listed = ", ".join(missing)
        parts.append(f'<p class="note">Not available for this version: {html.escape(listed)}.</p>')
    return _section("charts", "Charts", "".join(parts), available=bool(figures))


def _partial_dependence(
    index: int, entry: Mapping[str, Any], task: object, target_name: object, rare: Mapping[str, Any]
) -> str:
    feature = entry.get("feature")
    grid = _list(entry.get("grid"))
    outputs = _list(entry.get("outputs")) or ["value"]
    values = [_list(row) for row in _list(entry.get("values"))]
    if not grid or not values:
        return ""
    columns = list(range(len(outputs)))
    if task == "classification":
        if len(outputs) == 2:  # the two probabilities sum to one: draw the positive class's only
            columns = [1]
            y_label = f"Probability of {shorten(clean(outputs[1]), 30)}"
        else:
            y_label = "Average predicted probability"
    else:
        what = f" {shorten(clean(target_name), 40)}" if target_name is not None else ""
        y_label = f"Average predicted{what}"
    name = shorten(clean(feature), 80)
    chart_id = f"partial-dependence-{index}"
    title = f"Partial dependence on {name}"
    kind = entry.get("kind")
    numeric = kind == "numeric" or (kind is None and all(number(g) is not None for g in grid))
    if numeric:
        series = [
            svg.Series(
                outputs[k],
                [(g, values[i][k] if i < len(values) and k < len(values[i]) else None) for i, g in enumerate(grid)],
            )
            for k in columns
        ]
        chart = svg.line_chart(chart_id, title, series, x_label=name, y_label=y_label)
    else:
        bucket = rare.get(clean(feature))
        labels = ["other (rare)" if bucket is not None and g == bucket else g for g in grid]
        table = [[row[k] if k < len(row) else None for k in columns] for row in values]
        chart = svg.category_chart(
            chart_id, title, labels, [outputs[k] for k in columns], table, x_label=name, y_label=y_label
        )
    return _figure(
        chart,
        _caption(
            "Partial dependence",
            f" Average prediction as {_user(feature, 60)} varies, other features as in the training rows.",
        ),
    )


def _hyperparameters(card: Mapping[str, Any]) -> str:
    hyperparameters = _dict(card.get("hyperparameters"))
    if not hyperparameters:
        return _section("hyperparameters", "Hyperparameters", "", available=False)
    rows = [
        [f"<code>{_user(k, 60)}</code>", f"<code>{_user(_json_text(v), 200)}</code>"]
        for k, v in sorted(hyperparameters.items(), key=lambda kv: str(kv[0]))
    ]
    return _section("hyperparameters", "Hyperparameters", _table(["Name", "Value"], rows))


def _serving(card: Mapping[str, Any]) -> str:
    serving = _dict(card.get("serving"))
    environment = _dict(card.get("environment"))
    digests = _dict(card.get("digests"))
    parts = []
    if serving:
        pairs = [("Format", f"<code>{_user(serving.get('format') or '—', 30)}</code>")]
        pairs += [
            (clean(k).replace("_", " ").capitalize(), _value(v, 300)) for k, v in serving.items() if k != "format"
        ]
        parts.append(_facts(pairs))
    if environment:
        rows = [[_user(k, 40), f"<code>{_user(v, 60)}</code>"] for k, v in environment.items()]
        parts.append("<h3>Environment at training</h3>" + _table(["Package", "Version"], rows))
    if digests:
        rows = [
            [
                _user(k, 60),
                f'<code class="hash">{_user(v, 200)}</code>' if v is not None else '<span class="muted">—</span>',
            ]
            for k, v in digests.items()
        ]
        parts.append("<h3>Digests</h3>" + _table(["File", "SHA-256"], rows, css="digests"))
    return _section("serving", "Serving", "".join(parts), available=bool(parts))


def _stage_history(card: Mapping[str, Any]) -> str:
    history = [h for h in _list(card.get("stage_history")) if isinstance(h, Mapping)]
    if not history:
        text = "No stage change was recorded." if _list(card.get("stages")) else "No stage has served this version yet."
        return _section("stage-history", "Stage history", f'<p class="muted">{text}</p>')
    ordered = [
        h for _, h in sorted(enumerate(history), key=lambda ih: (str(ih[1].get("time") or ""), ih[0]), reverse=True)
    ]
    rows = [
        [
            _time(h.get("time")),
            _badge(h["stage"]) if h.get("stage") is not None else "—",
            _user(h.get("action") or "—", 20),
            _num(h.get("from")) if h.get("from") is not None else "—",
            _num(h.get("to")) if h.get("to") is not None else "—",
            f'<span class="mono hash">{_user(h["by"], 120)}</span>' if h.get("by") is not None else "—",
            f'<span class="mono hash">{_user(h["request_id"], 60)}</span>' if h.get("request_id") is not None else "—",
        ]
        for h in ordered
    ]
    table = _table(["Time", "Stage", "Action", "From", "To", "By", "Request id"], rows, numeric=[3, 4], css="history")
    return _section("stage-history", "Stage history", '<p class="note">Newest first.</p>' + table)


def _links(card: Mapping[str, Any], page: str) -> str:
    model, version = card.get("model"), card.get("version")
    base = f"/models/{quote(str(model), safe='')}"
    version_path = f"{base}/versions/{quote(str(version), safe='')}"
    items = [
        (relative_href(page, f"{page}?format=json"), "This card as JSON"),
        (relative_href(page, FRONT_PAGE_PATH), "All models"),
        (relative_href(page, DOCS_PATH), "API documentation"),
    ]
    links = "".join(f'<li><a href="{esc(href)}">{html.escape(text)}</a></li>' for href, text in items)
    query = f"?version={quote(str(version), safe='')}"
    endpoints = (
        f"<p>Predict with this version: <code>POST {_user(f'{base}/predict{query}', 200)}</code>; "
        f"explain its predictions: <code>POST {_user(f'{base}/explain{query}', 200)}</code>; "
        f"its metadata: <code>GET {_user(version_path, 200)}</code> "
        '<span class="muted">(paths under the API\'s base address; each needs the credentials the API documentation describes)</span>.</p>'
    )
    return _section("links", "Links", f'<ul class="plain">{links}</ul>{endpoints}')


_SECTIONS = (
    ("purpose", "Purpose"),
    ("data", "Data"),
    ("metrics", "Metrics"),
    ("charts", "Charts"),
    ("hyperparameters", "Hyperparameters"),
    ("serving", "Serving"),
    ("stage-history", "Stage history"),
    ("links", "Links"),
)


def card_html(card: Mapping[str, Any]) -> str:
    """The card of one version as a self-contained HTML page, served at card_path(model, version)."""
    card = card if isinstance(card, Mapping) else {}
    model, version = card.get("model"), card.get("version")
    page = card_path(model, version)
    toc = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title in _SECTIONS)
    nav = (
        '<nav class="top" aria-label="Site">'
        f'<a href="{esc(relative_href(page, FRONT_PAGE_PATH))}">All models</a>'
        f'<a href="{esc(relative_href(page, DOCS_PATH))}">API docs</a>'
        f'<a href="{esc(relative_href(page, f"{page}?format=json"))}">JSON</a></nav>'
    )
    body = [
        nav,
        "<main>",
        _header(card),
        f'<nav class="toc" aria-label="On this page">{toc}</nav>',
        _purpose(card),
        _data(card),
        _metrics(card),
        _charts(card),
        _hyperparameters(card),
        _serving(card),
        _stage_history(card),
        _links(card, page),
        "</main>",
        "<footer>Everything on this page was recorded at training; nothing is loaded from another site.</footer>",
    ]
    title = f"{shorten(clean(model), 80)} v{shorten(clean(version), 20)} — model card"
    return _page(title, "\n".join(body))


# --- front page -----------------------------------------------------------------------------------------


def _headline(metrics: object) -> str:
    found = _dict(metrics)
    if "accuracy" in found:
        return f'<span class="muted">accuracy</span> {_num(found.get("accuracy"))}'
    if "r2" in found:
        return f'<span class="muted">R²</span> {_num(found.get("r2"))}'
    return '<span class="muted">—</span>'


def _version_key(entry: Mapping[str, Any]) -> tuple[int, float]:
    version = number(entry.get("version"))
    return (0, -version) if version is not None else (1, 0.0)


def _model_section(index: int, model: Mapping[str, Any]) -> str:
    name = model.get("name")
    stages = _dict(model.get("stages"))
    versions = sorted((v for v in _list(model.get("versions")) if isinstance(v, Mapping)), key=_version_key)
    serving = ", ".join(
        f"{_badge(stage)} v{_num(version)}"
        for stage, version in sorted(stages.items(), key=lambda sv: (_STAGE_ORDER.get(str(sv[0]), 9), str(sv[0])))
    )
    latest = model.get("latest_version")
    facts = []
    if latest is not None:
        facts.append(f"latest version {_num(latest)}")
    summary = (
        f'<p class="note">{"; ".join(facts)}{" · " if facts and serving else ""}{serving}</p>'
        if facts or serving
        else ""
    )
    rows = []
    for entry in versions:
        version = entry.get("version")
        href = relative_href(FRONT_PAGE_PATH, card_path(name, version))
        served = [stage for stage, v in stages.items() if v is not None and v == version]
        description = entry.get("description")
        rows.append(
            [
                f'<a href="{esc(href)}">version {_user(version, 20)}</a>',
                f'<span class="badges">{_badges(served)}</span>' if served else "",
                f"<code>{_user(entry.get('algorithm') or '—', 40)}</code>",
                _user(entry.get("task") or "—", 20),
                _time(entry.get("created_at")),
                _headline(entry.get("metrics")),
                _user(description, 160)
                if isinstance(description, str) and description
                else '<span class="muted">—</span>',
            ]
        )
    table = (
        _table(
            ["Version", "Serving", "Algorithm", "Task", "Created", "Headline metric", "Description"],
            rows,
            css="versions",
        )
        if rows
        else '<p class="muted">No version is ready yet.</p>'
    )
    return f'<section class="model" id="model-{index}"><h2>{_user(name, 120)}</h2>{summary}{table}</section>'


def front_page_html(models: Sequence[Mapping[str, Any]], *, docs_url: str = DOCS_PATH) -> str:
    """The service's front page, served at "/": every model with its versions, each linking to its card."""
    docs = _docs_href(docs_url)
    models = [m for m in (models if isinstance(models, list | tuple) else []) if isinstance(m, Mapping)]
    count = sum(len(_list(m.get("versions"))) for m in models)
    intro = (
        "<p>Models trained, registered and served by this service. Each version has a model card: what it was "
        "trained on, how well it does on rows it never saw, and how its predictions respond to each feature. "
        f'The REST API is described in the <a href="{esc(docs)}">API documentation</a>.</p>'
    )
    parts = [
        f'<nav class="top" aria-label="Site"><a href="{esc(docs)}">API docs</a></nav>',
        "<main>",
        f'<section id="intro"><h1>Serverless ML — models</h1>{intro}</section>',
    ]
    if models:
        listed = "".join(_model_section(i, m) for i, m in enumerate(models))
        heading = (
            f"{len(models):,} model{'s' if len(models) != 1 else ''}, {count:,} version{'s' if count != 1 else ''}"
        )
        parts.append(f'<section id="models"><p class="note">{heading}</p>{listed}</section>')
    else:
        parts.append(
            '<section id="models"><h2>No models yet</h2><p>Train one, for example on the bundled iris data set:</p>'
            f"<pre><code>{html.escape(TRAIN_EXAMPLE)}</code></pre>"
            '<p class="note">with <code>API</code> set to this page\'s address, without the trailing slash. On AWS '
            "the call is signed with SigV4 (for example with <code>awscurl --service execute-api</code>). The new "
            "version and its card appear here when training finishes.</p></section>"
        )
    parts += ["</main>", "<footer>Nothing on this page is loaded from another site.</footer>"]
    return _page("Serverless ML — models", "\n".join(parts))
