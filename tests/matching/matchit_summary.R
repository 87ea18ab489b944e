# One MatchIt 4.5.1 nearest-neighbour match and its summary(), for tests/matching/test_matchit_options.py.
#
# The distance goes in multiplied by 2^k (exact in floating point) because Debian's MatchIt 4.5.1 truncates
# distance differences with C's integer abs() in its vector path (see matchit_matrix.R); everything compared
# here (sets, weights, subclass, sample sizes, balance statistics) is unchanged by that scaling except the
# "distance" row, which the test compares on the same scaled distance. Ratio 1 only (or replace = TRUE):
# ratio > 1 without replacement runs into the vector path's index slip (matchit_matrix.R).

matchit_summary <- function(df, rhs, dist, ratio = 1, caliper = NULL, order = NULL, replace = FALSE,
                            exact = NULL, estimand = "ATT", discard = "none", interactions = FALSE,
                            addl = NULL, s.weights = NULL, reuse.max = NULL) {
  suppressPackageStartupMessages(library(MatchIt))
  n <- nrow(df)
  rownames(df) <- as.character(seq_len(n))
  k <- 2^floor(log2(2^29 / max(abs(dist))))
  scaled <- unname(dist) * k
  f <- as.formula(paste("treat ~", rhs))
  ex <- if (is.null(exact)) NULL else reformulate(exact)
  m <- suppressWarnings(matchit(f, data = df, method = "nearest", distance = scaled, ratio = ratio,
                                caliper = caliper, std.caliper = TRUE, m.order = order, replace = replace,
                                exact = ex, estimand = estimand, discard = discard, s.weights = s.weights,
                                reuse.max = reuse.max))
  s <- summary(m, interactions = interactions, data = df,
               addlvariables = if (is.null(addl)) NULL else reformulate(addl))
  tab <- function(x) list(rows = rownames(x), cols = colnames(x), values = unname(as.matrix(x)))
  mm <- m$match.matrix
  list(
    k = k,
    focal = as.integer(rownames(mm)),
    match_matrix = matrix(as.integer(mm), nrow = nrow(mm)),
    weights = unname(m$weights),
    subclass = if (is.null(m$subclass)) NULL else as.integer(as.character(m$subclass)),
    discarded = unname(m$discarded),
    nn = tab(s$nn),
    sum_all = tab(s$sum.all),
    sum_matched = tab(s$sum.matched),
    reduction = tab(summary(m, improvement = TRUE)$reduction),
    md_weights = unname(match.data(m, data = df)$weights),
    gm_weights = unname(get_matches(m, data = df)$weights),
    caliper = if (is.null(m$caliper)) NULL else unname(m$caliper) / k
  )
}

# The same for MatchIt's scanning path: a named covariate distance ("mahalanobis", ...) or a numeric distance
# (scaled by 2^k as above) with mahvars, antiexact, named (covariate) calipers, ratio > 1.
matchit_general <- function(df, rhs, distance, mahvars = NULL, antiexact = NULL, caliper = NULL,
                            std.caliper = TRUE, ratio = 1, order = NULL, replace = FALSE, exact = NULL,
                            estimand = "ATT", summary_rhs = NULL, reuse.max = NULL) {
  suppressPackageStartupMessages(library(MatchIt))
  n <- nrow(df)
  rownames(df) <- as.character(seq_len(n))
  k <- 1
  if (is.numeric(distance)) {
    k <- 2^floor(log2(2^29 / max(abs(distance))))
    distance <- unname(distance) * k
  }
  f <- as.formula(paste("treat ~", rhs))
  form <- function(v) if (is.null(v)) NULL else reformulate(v)
  m <- suppressWarnings(matchit(f, data = df, method = "nearest", distance = distance, ratio = ratio,
                                mahvars = form(mahvars), antiexact = form(antiexact), caliper = caliper,
                                std.caliper = std.caliper, m.order = order, replace = replace,
                                exact = form(exact), estimand = estimand, reuse.max = reuse.max))
  s <- summary(m)
  tab <- function(x) list(rows = rownames(x), cols = colnames(x), values = unname(as.matrix(x)))
  mm <- m$match.matrix
  cal <- m$caliper
  list(
    k = k,
    focal = as.integer(rownames(mm)),
    match_matrix = matrix(as.integer(mm), nrow = nrow(mm)),
    weights = unname(m$weights),
    subclass = if (is.null(m$subclass)) NULL else as.integer(as.character(m$subclass)),
    discarded = unname(m$discarded),
    nn = tab(s$nn),
    sum_all = tab(s$sum.all),
    sum_matched = tab(s$sum.matched),
    caliper_names = if (is.null(cal)) NULL else as.list(names(cal)),
    caliper = if (is.null(cal)) NULL else as.list(unname(cal)),
    match_data = {
      md <- match.data(m, data = df)
      list(rows = as.integer(rownames(md)), names = names(md), weights = unname(md$weights),
           subclass = if (is.null(md$subclass)) NULL else as.integer(as.character(md$subclass)))
    },
    match_data_treated = as.integer(rownames(match.data(m, data = df, group = "treated"))),
    get_matches = {
      gm <- get_matches(m, data = df)
      list(id = as.integer(as.character(gm$id)), subclass = as.integer(as.character(gm$subclass)),
           weights = unname(gm$weights), names = names(gm))
    }
  )
}
