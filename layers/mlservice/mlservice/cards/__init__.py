"""Model cards: what a version was trained on, how well it does and how it behaves, as data and as HTML.

The HTML (render, drawing its charts with svg) is built from the JSON-ready card document by pure functions
using only the standard library: the page is served by a function without scikit-learn, numpy or any
plotting library, and it must work offline and under a strict Content-Security-Policy (inline <style>,
no script, nothing from another origin).
"""
