/*
 * The forest of a fitted HistGradientBoostingClassifier, evaluated in one C call.
 *
 * Why: scikit-learn predicts tree by tree (one Python-level call per tree, 100-200 for the
 * project's champion) and takes the GIL back between trees, so under load the answering
 * thread waits for the GIL once per tree. This walks every tree for every row in one call that
 * holds no GIL (ctypes releases it), with exactly the decisions of scikit-learn's
 * `_predict_one_from_raw_data` and the same float64 additions in the same order (baseline,
 * then tree 1, tree 2, ...), so the results are identical bit for bit.
 *
 * Speed comes from two things (docs/serving.md, "The fast path"): one 24-byte record per node,
 * so a step is two dependent loads (the node, the row's value) instead of five; and eight rows
 * walked side by side through each tree, so their independent chains of loads overlap.
 *
 * The node records are the flattened forest that `fast_path.CompiledHGB` builds: all trees'
 * nodes concatenated, child indexes global, a leaf pointing at itself (so a row that reached
 * its leaf may take more steps while the other rows of its group finish).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>

/* Must match fast_path.NODE_DTYPE (checked there by itemsize and field offsets). */
typedef struct {
    double threshold;     /* numeric split: left if value <= threshold */
    int32_t feature;      /* column of the row; 0 for a leaf */
    int32_t left;         /* global node index; a leaf's own index */
    int32_t right;
    int16_t category_row; /* row of the category table for a categorical split, else -1 */
    uint8_t missing_left; /* where NaN (and, for categories, negative codes) go */
    uint8_t is_leaf;
} shadowdrift_node;

#define ROWS_TOGETHER 8

static inline int32_t next_node(const double *row, const shadowdrift_node *node,
                                const uint8_t *category_table)
{
    const double x = row[node->feature];
    int go_left;
    if (node->category_row < 0) {
        go_left = isnan(x) ? node->missing_left : (x <= node->threshold);
    } else if (isnan(x) || x < 0) {
        /* scikit-learn treats a negative category code as missing */
        go_left = node->missing_left;
    } else {
        /* ... and casts the others to uint8 before looking them up in its bitsets; the table
         * holds the outcome of both bitsets (left, else right if known, else as missing) */
        go_left = category_table[(int64_t)node->category_row * 256 + (((int64_t)x) & 255)];
    }
    return go_left ? node->left : node->right;
}

/*
 * out[i] = baseline + the leaf values row i reaches, added tree by tree.
 * X: n_rows x n_features float64, C order, in the estimator's internal layout.
 * category_table: one row of 256 go-left flags (uint8) per categorical split.
 */
void shadowdrift_forest_raw(const double *X, int64_t n_rows, int64_t n_features,
                            const int32_t *roots, int64_t n_trees,
                            const shadowdrift_node *nodes, const uint8_t *category_table,
                            const double *value, double baseline, double *out)
{
    int64_t i = 0;
    for (; i + ROWS_TOGETHER <= n_rows; i += ROWS_TOGETHER) {
        double raw[ROWS_TOGETHER];
        const double *rows[ROWS_TOGETHER];
        for (int r = 0; r < ROWS_TOGETHER; r++) {
            raw[r] = baseline;
            rows[r] = X + (i + r) * n_features;
        }
        for (int64_t t = 0; t < n_trees; t++) {
            int32_t at[ROWS_TOGETHER];
            for (int r = 0; r < ROWS_TOGETHER; r++) at[r] = roots[t];
            for (;;) {
                int walking = 0;
                for (int r = 0; r < ROWS_TOGETHER; r++) {
                    const shadowdrift_node *node = nodes + at[r];
                    walking |= !node->is_leaf;
                    at[r] = next_node(rows[r], node, category_table);
                }
                if (!walking) break;
            }
            for (int r = 0; r < ROWS_TOGETHER; r++) raw[r] += value[at[r]];
        }
        for (int r = 0; r < ROWS_TOGETHER; r++) out[i + r] = raw[r];
    }
    for (; i < n_rows; i++) {
        const double *row = X + i * n_features;
        double raw = baseline;
        for (int64_t t = 0; t < n_trees; t++) {
            int32_t at = roots[t];
            while (!nodes[at].is_leaf) at = next_node(row, nodes + at, category_table);
            raw += value[at];
        }
        out[i] = raw;
    }
}

/* Only so that the import system finds and loads the file; the function is used via ctypes. */
static struct PyModuleDef forest_module = {
    PyModuleDef_HEAD_INIT, "_forest",
    "shadowdrift_forest_raw: a HistGradientBoosting forest in one GIL-free call (ctypes).", -1,
    NULL,
};

PyMODINIT_FUNC PyInit__forest(void) { return PyModule_Create(&forest_module); }
