# Reference fixtures for retrocohort.matching: glm (propensity score), MatchIt
# nearest-neighbour matching (through its matrix path, see
# tests/matching/matchit_matrix.R) and tableone's SMD / Table 1 numbers.
# tableone and survey are not packaged for Debian, so their formulas are
# computed here in plain R (tableone::ExtractSmd, survey::svyvar).
source(file.path("tests", "matching", "matchit_matrix.R"), local = TRUE)

set.seed(20240502)
n <- 240
cohort <- data.frame(
  age = round(rnorm(n, 64, 13), 1),
  sex = sample(c("F", "M"), n, replace = TRUE),
  sepsis = rbinom(n, 1, 0.45),
  stage = sample(c("I", "II", "III"), n, replace = TRUE, prob = c(0.4, 0.35, 0.25)),
  lactate = round(rlnorm(n, 0.6, 0.6), 2),
  stringsAsFactors = FALSE
)
lp_true <- -1.6 + 0.025 * (cohort$age - 64) + 0.5 * (cohort$sex == "M") + 0.6 * cohort$sepsis +
  0.4 * (cohort$stage == "III") + 0.15 * cohort$lactate
cohort$mg <- rbinom(n, 1, plogis(lp_true))

# ---- glm ---------------------------------------------------------------
for (link in c("logit", "probit")) {
  fit <- glm(mg ~ age + sex + sepsis + stage + lactate, data = cohort, family = binomial(link))
  s <- coef(summary(fit))
  write_reference(
    paste0("glm_", link),
    sprintf('glm(mg ~ age + sex + sepsis + stage + lactate, data = cohort, family = binomial("%s"))', link),
    list(terms = rownames(s), estimate = unname(s[, 1]), std_error = unname(s[, 2]), z = unname(s[, 3]),
         p = unname(s[, 4]), fitted = unname(fitted(fit)), linear = unname(predict(fit)),
         deviance = fit$deviance, null_deviance = fit$null.deviance, aic = fit$aic, iter = fit$iter),
    data = cohort)
}

# ---- MatchIt nearest ----------------------------------------------------
fit <- glm(mg ~ age + sex + sepsis + stage + lactate, data = cohort, family = binomial())
cohort$ps <- unname(fitted(fit))
cohort$lp <- unname(predict(fit))
# Distances with many exact ties on a dyadic grid (exact differences), to pin down MatchIt's
# tie-breaking (nearest in the stable distance order, the lower distance first).
cohort$ps_tied <- round(cohort$ps * 8) / 8
cases <- list()
add_case <- function(distance, ratio, caliper, order, replace = FALSE, exact = NULL) {
  res <- matchit_matrix(cohort, "mg", cohort[[distance]], ratio = ratio, caliper = caliper, order = order,
                        replace = replace, exact = exact)
  cases[[length(cases) + 1]] <<- list(distance = distance, ratio = ratio, caliper = caliper, order = order,
                                       replace = replace, exact = exact, result = res)
}
for (ratio in 1:3) for (caliper in list(NULL, 0.2)) for (order in c("largest", "smallest", "data")) {
  add_case("ps", ratio, caliper, order)
}
add_case("lp", 2, 0.2, "largest")
add_case("lp", 2, 0.2, "largest", exact = "sex")
add_case("ps", 1, NULL, "smallest", exact = c("sex", "sepsis"))
add_case("ps", 3, 0.5, "data", exact = "stage")
add_case("ps", 1, NULL, "largest", replace = TRUE)
add_case("ps", 2, 0.2, "largest", replace = TRUE)
add_case("lp", 3, NULL, "largest", replace = TRUE)
add_case("ps_tied", 1, NULL, "largest")
add_case("ps_tied", 1, 0.5, "data")
add_case("ps_tied", 1, NULL, "smallest")
add_case("ps_tied", 1, NULL, "largest", replace = TRUE)
write_reference(
  "matchit_nearest",
  paste("matchit(mg ~ 1, method = 'nearest', distance = distance * 2^k (integer-abs workaround),",
        "ratio, caliper = caliper * sd(distance) * 2^k, std.caliper = FALSE, m.order, replace, exact);",
        "ratio > 1: the distance-matrix path; see tests/matching/matchit_matrix.R"),
  list(cases = cases),
  data = cohort)

# ---- tableone SMD and Table 1 numbers -----------------------------------
# Matching weights from one case, to check the weighted (svyCreateTableOne) formulas.
w <- matchit_matrix(cohort, "mg", cohort$lp, ratio = 2, caliper = 0.2)$weights
svyvar_w <- function(x, w) {
  # survey::svyvar: n/(n-1) * sum(w (x - xbar)^2) / sum(w), n = units with positive weight
  keep <- w > 0; x <- x[keep]; w <- w[keep]; nn <- length(x)
  xbar <- sum(w * x) / sum(w)
  nn / (nn - 1) * sum(w * (x - xbar)^2) / sum(w)
}
smd_cont <- function(m1, v1, m0, v0) (m1 - m0) / sqrt((v1 + v0) / 2)
smd_multi <- function(p1, p0) {
  # tableone StdDiffMulti (Yang & Dalton 2012), first level dropped, MASS::ginv
  p1 <- p1[-1]; p0 <- p0[-1]
  s <- (diag(p1, length(p1)) - outer(p1, p1) + diag(p0, length(p0)) - outer(p0, p0)) / 2
  sqrt(drop(t(p1 - p0) %*% MASS::ginv(s) %*% (p1 - p0)))
}
summ <- function(weights) {
  t1 <- cohort$mg == 1
  out <- list()
  for (v in c("age", "lactate")) {
    x <- cohort[[v]]
    m1 <- weighted.mean(x[t1], weights[t1]); m0 <- weighted.mean(x[!t1], weights[!t1])
    v1 <- svyvar_w(x[t1], weights[t1]); v0 <- svyvar_w(x[!t1], weights[!t1])
    out[[v]] <- list(mean_treated = m1, mean_control = m0, sd_treated = sqrt(v1), sd_control = sqrt(v0),
                     smd = abs(smd_cont(m1, v1, m0, v0)), variance_ratio = v1 / v0)
  }
  for (v in c("sex", "sepsis", "stage")) {
    x <- factor(cohort[[v]])
    p1 <- sapply(levels(x), function(l) sum(weights[t1 & x == l]) / sum(weights[t1]))
    p0 <- sapply(levels(x), function(l) sum(weights[!t1 & x == l]) / sum(weights[!t1]))
    out[[v]] <- list(levels = levels(x), p_treated = unname(p1), p_control = unname(p0),
                     smd = smd_multi(p1, p0))
  }
  out
}
write_reference("smd_tableone",
                "tableone ExtractSmd / svyCreateTableOne formulas computed in R (tableone and survey not packaged)",
                list(unweighted = summ(rep(1, n)), weighted = summ(w), weights = w), data = cohort)

# Table 1 cells as tableone prints them: sprintf("%.2f") mean (sd), median [p25, p75] (quantile type 7),
# n (pct) with pct to 1 decimal, SMD to 3 decimals.
t1 <- cohort$mg == 1
cell_mean <- function(x) sprintf("%.2f (%.2f)", mean(x), sd(x))
cell_median <- function(x) { q <- quantile(x, c(0.5, 0.25, 0.75)); sprintf("%.2f [%.2f, %.2f]", q[1], q[2], q[3]) }
cell_n <- function(x, level) sprintf("%d (%.1f)", sum(x == level), 100 * mean(x == level))
rows <- list(
  list(label = "n", control = as.character(sum(!t1)), treated = as.character(sum(t1)), smd = ""),
  list(label = "age (mean (SD))", control = cell_mean(cohort$age[!t1]), treated = cell_mean(cohort$age[t1]),
       smd = sprintf("%.3f", abs(smd_cont(mean(cohort$age[t1]), var(cohort$age[t1]),
                                          mean(cohort$age[!t1]), var(cohort$age[!t1]))))),
  list(label = "sex = M (%)", control = cell_n(cohort$sex[!t1], "M"), treated = cell_n(cohort$sex[t1], "M"),
       smd = sprintf("%.3f", summ(rep(1, n))$sex$smd)),
  list(label = "stage (%)", control = "", treated = "", smd = sprintf("%.3f", summ(rep(1, n))$stage$smd)),
  list(label = "   I", control = cell_n(cohort$stage[!t1], "I"), treated = cell_n(cohort$stage[t1], "I"), smd = ""),
  list(label = "   II", control = cell_n(cohort$stage[!t1], "II"), treated = cell_n(cohort$stage[t1], "II"), smd = ""),
  list(label = "   III", control = cell_n(cohort$stage[!t1], "III"), treated = cell_n(cohort$stage[t1], "III"), smd = ""),
  list(label = "lactate (median [IQR])", control = cell_median(cohort$lactate[!t1]),
       treated = cell_median(cohort$lactate[t1]),
       smd = sprintf("%.3f", summ(rep(1, n))$lactate$smd))
)
write_reference("smd_table_one_cells",
                paste("print(CreateTableOne(c('age','sex','stage','lactate'), strata = 'mg', data = cohort),",
                      "nonnormal = 'lactate', smd = TRUE) cells, built with sprintf in R"),
                list(rows = rows), data = cohort)
