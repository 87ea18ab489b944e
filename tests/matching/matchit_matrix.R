# MatchIt nearest-neighbour matching through its distance-VECTOR path (nn_matchC_vec), the path
# matchit() takes with distance = "glm" or a numeric vector, with an exact workaround for a bug.
#
# Debian's MatchIt 4.5.1 computes |d_i - d_j| in that path with C's integer abs(): the difference is
# truncated to a whole number, so every difference below 1 becomes 0, left and right neighbours always
# compare equal and calipers below 1 are ignored (upstream MatchIt computes it in double precision).
# Matching depends on the distance only through its order and the order of differences, so the
# distance is multiplied by a power of two 2^k (exact in floating point) chosen so |distance| < 2^29:
# the truncated differences then resolve differences down to 2^-k and the caliper (multiplied by the
# same 2^k) is compared on the same scale. Two differences closer than 2^-k without being equal would
# still compare equal; tie fixtures therefore use distances on a dyadic grid, where ties are exact.
#
# ratio > 1 goes through the distance-MATRIX path instead (matchit_distmat below): in rounds after the
# first, MatchIt's vector path (4.5.1 and upstream's nn_matchC_vec.cpp as read) compares the 0-based
# index of a candidate control with the 1-based indices stored in the treated unit's row, so it skips
# the control just after (in data order) one the unit already has and takes a farther one. retrocohort
# does not reproduce that. The matrix path has no such slip but breaks exact ties differently (first
# control in data order), so ratio > 1 references are made on distances without exact ties.

# Used by tests/reference/r/matching.R (fixtures) and by the live tests.
matchit_matrix <- function(df, treat, dist, ratio = 1, caliper = NULL, order = "largest",
                           replace = FALSE, exact = NULL) {
  suppressPackageStartupMessages(library(MatchIt))
  if (ratio > 1) {
    return(matchit_distmat(df, treat, dist, ratio = ratio, caliper = caliper, order = order,
                           replace = replace, exact = exact))
  }
  n <- nrow(df)
  rownames(df) <- as.character(seq_len(n))
  tr <- as.integer(df[[treat]])
  i1 <- which(tr == 1)
  df$.treat <- tr
  k <- floor(log2(2^29 / max(abs(dist))))
  scaled <- unname(dist) * 2^k
  cal <- if (is.null(caliper)) NULL else caliper * sd(dist)
  ex <- if (is.null(exact)) NULL else reformulate(exact)
  m <- suppressWarnings(matchit(.treat ~ 1, data = df, method = "nearest", distance = scaled,
                                ratio = ratio, caliper = if (is.null(cal)) NULL else cal * 2^k,
                                std.caliper = FALSE, m.order = order, replace = replace, exact = ex))
  mm <- m$match.matrix[as.character(i1), , drop = FALSE]
  mm_num <- matrix(as.integer(mm), nrow = nrow(mm))
  weights <- unname(m$weights[rownames(df)])
  subclass <- NULL
  if (!replace) subclass <- as.integer(as.character(m$subclass[rownames(df)]))
  nn <- summary(m)$nn
  list(match_matrix = mm_num, weights = weights, subclass = subclass,
       nn = list(rows = rownames(nn), control = unname(nn[, "Control"]), treated = unname(nn[, "Treated"])),
       caliper_distance = cal)
}

# Distance-matrix path: the treated x control matrix of |differences|, rows sorted into the wanted order
# with m.order = "data" (controls keep data order, which its tie-breaking follows).
matchit_distmat <- function(df, treat, dist, ratio = 1, caliper = NULL, order = "largest",
                           replace = FALSE, exact = NULL) {
  suppressPackageStartupMessages(library(MatchIt))
  n <- nrow(df)
  rownames(df) <- as.character(seq_len(n))
  tr <- as.integer(df[[treat]])
  i1 <- which(tr == 1)
  i0 <- which(tr == 0)
  o1 <- switch(order,
               largest = i1[order(dist[i1], decreasing = TRUE)],
               smallest = i1[order(dist[i1])],
               data = i1)
  perm <- c(o1, i0)
  sorted <- df[perm, , drop = FALSE]
  sorted$.treat <- tr[perm]
  sorted$.dist <- dist[perm]
  dmat <- abs(outer(dist[o1], dist[i0], "-"))
  cal <- if (is.null(caliper)) NULL else caliper * sd(dist)
  ex <- if (is.null(exact)) NULL else reformulate(exact)
  m <- suppressWarnings(matchit(.treat ~ .dist, data = sorted, method = "nearest", distance = dmat,
                                ratio = ratio, caliper = cal, std.caliper = FALSE, m.order = "data",
                                replace = replace, exact = ex))
  treat_named <- setNames(tr, rownames(df))
  mm <- m$match.matrix[as.character(i1), , drop = FALSE]
  mm_num <- matrix(as.integer(mm), nrow = nrow(mm))
  weights <- unname(m$weights[rownames(df)])
  subclass <- NULL
  if (!replace) {
    # MatchIt's own subclass numbering as it would be on the data in its original order.
    sc <- MatchIt:::mm2subclass(MatchIt:::charmm2nummm(mm, treat_named), treat_named)
    subclass <- as.integer(as.character(sc))
  }
  nn <- summary(m)$nn
  list(match_matrix = mm_num, weights = weights, subclass = subclass,
       nn = list(rows = rownames(nn), control = unname(nn[, "Control"]), treated = unname(nn[, "Treated"])),
       caliper_distance = cal)
}
