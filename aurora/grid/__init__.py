"""The grid's cells: one (extractor, reducer, clusterer, k) cell run on a fit sample, scored
and ranked (Borda); imports reduction/, clustering/ and infrastructure, never run/ or fusion/."""
