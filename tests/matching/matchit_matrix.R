# MatchIt nearest-neighbour matching through its distance-MATRIX path.
#
# Debian's MatchIt 4.5.1 computes |d_i - d_j| with C's integer abs() in its
# distance-VECTOR path (fixed upstream in 4.5.4): every difference below 1
# becomes 0 and calipers below 1 are ignored. Its matrix path is correct, so
# the reference results come from it: `distance =` the treated-by-control
# matrix of absolute differences, the caliper already multiplied by
# sd(distance) with std.caliper = FALSE, and m.order = "data" with the treated
# rows sorted into the wanted order (controls keep their data order, which is
# what MatchIt's tie-breaking follows).
#
# Used by tests/reference/r/matching.R (fixtures) and by the live tests.
matchit_matrix <- function(df, treat, dist, ratio = 1, caliper = NULL, order = "largest",
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
