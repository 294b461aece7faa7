"""Per-prediction explanations: for each row, a base value and one additive contribution per input feature.

A client sees features as the columns it sends, not the encoded columns the model sees, so every method credits
the raw columns (a category's one-hot columns and a text's TF-IDF columns add up to their column), and every
method is additive — base + Σ contributions equals the model's output for the row — so a contribution reads as
"how much this column moved the output away from the typical one". Exact methods are used where the model's
structure allows them, because they are cheaper and have no noise; the rest are estimated by sampling, with
standard errors and a bound on the model evaluations a request may cost.

    explainer  the entry points: attach_background (training) and explain (serving); the method per model,
               the cost bounds, the JSON response
    linear     exact values for outputs linear in the encoded columns (coefficient × deviation from the mean)
    treeshap   exact path-dependent TreeSHAP for decision trees, random forests and gradient boosting
    sampling   permutation-sampling Shapley values over the raw columns against background rows, and token
               occlusion for text

Only scikit-learn, numpy and scipy are used, and only the scikit-learn function imports this package; the
artifact carries what it needs as plain numpy attributes, so serving unpickles it without this package.
"""
