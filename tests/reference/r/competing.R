# Cumulative incidence (cmprsk::cuminc estimates and variances), cmprsk::timepoints
# and Gray's test (cuminc()$Tests) references for tests/survival/test_competing.py.
# Sourced by tests/reference/make_reference.R (which defines write_reference).

# cuminc returns step points (time 0, both corners of every jump, the last time);
# we keep one row per distinct time where the CIF of the cause jumps: the value
# after the jump, i.e. at the last step point with that time.
cuminc_rows <- function(ci, data, group, cause, cencode, conf_level) {
  groups <- if (is.null(group)) "1" else sort(unique(as.character(data[[group]])))
  rows <- list()
  z <- qnorm(1 - (1 - conf_level) / 2)
  for (g in groups) {
    curve <- ci[[paste(g, cause)]]
    in_group <- if (is.null(group)) rep(TRUE, nrow(data)) else as.character(data[[group]]) == g
    jumps <- sort(unique(data$time[in_group & data$status == cause]))
    at <- vapply(jumps, function(t) max(which(curve$time == t)), 1L)
    est <- curve$est[at]; v <- curve$var[at]
    # Pintilie's log(-log) interval (tidycmprsk's), cmprsk itself gives none
    scale <- z * sqrt(v) / (est * log(est))
    rows[[g]] <- data.frame(group = g, time = jumps, cif = est, variance = v,
                            lower = est^exp(-scale), upper = est^exp(scale))
  }
  do.call(rbind, rows)
}

competing_reference <- function(name, data, group = NULL, strata = NULL, cencode = 0, times, conf_level = 0.95) {
  args <- list(data$time, data$status, cencode = cencode)
  if (!is.null(group)) args$group <- data[[group]]
  if (!is.null(strata)) args$strata <- data[[strata]]
  ci <- do.call(cuminc, args)
  causes <- sort(unique(data$status[data$status != cencode]))
  estimates <- list(); at_times <- list()
  tp <- timepoints(ci, times)
  for (cause in causes) {
    estimates[[as.character(cause)]] <- cuminc_rows(ci, data, group, cause, cencode, conf_level)
    keep <- grepl(paste0(" ", cause, "$"), rownames(tp$est))
    at_times[[as.character(cause)]] <- list(rows = rownames(tp$est)[keep], est = unname(tp$est[keep, , drop = FALSE]),
                                            var = unname(tp$var[keep, , drop = FALSE]))
  }
  values <- list(causes = causes, group = group, strata = strata, censor_code = cencode, conf_level = conf_level,
                 estimates = estimates, times = times, at_times = at_times)
  call <- sprintf("cuminc(time, status, group=%s, strata=%s, cencode=%s); timepoints(fit, times)",
                  if (is.null(group)) "NULL" else group, if (is.null(strata)) "NULL" else strata, cencode)
  write_reference(paste0("cuminc_", name), call, values, data = data)
  if (!is.null(group)) {
    tests <- ci$Tests
    gray <- list(causes = as.numeric(rownames(tests)), statistic = unname(tests[, "stat"]),
                 p_value = unname(tests[, "pv"]), df = unname(tests[, "df"]), group = group, strata = strata,
                 censor_code = cencode)
    write_reference(paste0("gray_", name), sub("; timepoints.*", "$Tests", call), gray, data = data)
  }
}

# --- survival::mgus2: progression to plasma-cell malignancy (1) with death (2) competing
mg <- survival::mgus2
mgus_data <- data.frame(time = ifelse(mg$pstat == 0, mg$futime, mg$ptime),
                        status = ifelse(mg$pstat == 0, 2 * mg$death, 1),
                        sex = as.character(mg$sex), older = as.integer(mg$age >= 70))
competing_reference("mgus2", mgus_data, times = c(0, 60, 120, 240, 360, 480))
competing_reference("mgus2_sex", mgus_data, group = "sex", times = c(0, 60, 120, 240, 360))
competing_reference("mgus2_sex_strata", mgus_data, group = "sex", strata = "older", times = c(0, 120, 240))

# --- random data with whole-day ties, three causes, three groups and two strata
set.seed(5150)
n <- 500
arm <- sample(c("control", "magnesium", "other"), n, replace = TRUE, prob = c(0.4, 0.4, 0.2))
t_krt <- rexp(n, ifelse(arm == "magnesium", 1 / 40, 1 / 30))
t_death <- rexp(n, 1 / 50)
t_transfer <- rexp(n, 1 / 150)
t_censor <- runif(n, 5, 90)
first <- pmin(t_krt, t_death, t_transfer, t_censor)
tied_data <- data.frame(time = ceiling(first),
                        status = ifelse(first == t_censor, 0, ifelse(first == t_krt, 1, ifelse(first == t_death, 2, 3))),
                        arm = arm, site = sample(c("north", "south"), n, replace = TRUE))
competing_reference("tied_arm", tied_data, group = "arm", times = seq(0, 90, by = 15))
competing_reference("tied_arm_strata", tied_data, group = "arm", strata = "site", times = c(0, 30, 60))

# --- a censoring code other than 0 and small groups where some curves reach S = 0
small_data <- data.frame(time = c(1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 1, 1, 2, 3, 3, 5, 5, 6),
                         status = c(1, 2, 1, 9, 1, 2, 9, 1, 1, 2, 2, 1, 1, 9, 1, 2, 2, 1),
                         group = rep(c("a", "b"), c(10, 8)))
competing_reference("small_cencode9", small_data, group = "group", cencode = 9, times = c(0, 2, 4, 6, 7))

# --- a 2-group case small enough to check by hand (tests/survival/test_gray.py does):
# two tied cause-2 events in group a on day 1, tied cause-1 events in both groups on day 2
hand_data <- data.frame(time = c(1, 1, 2, 3, 3, 2, 3), status = c(2, 2, 1, 0, 0, 1, 0),
                        group = c("a", "a", "a", "a", "a", "b", "b"))
hand_tests <- cuminc(hand_data$time, hand_data$status, hand_data$group)$Tests
write_reference("gray_hand_ties", "cuminc(time, status, group)$Tests",
                list(causes = as.numeric(rownames(hand_tests)), statistic = unname(hand_tests[, "stat"]),
                     p_value = unname(hand_tests[, "pv"]), df = unname(hand_tests[, "df"]), group = "group",
                     strata = NULL, censor_code = 0),
                data = hand_data)

# --- many small random data sets with heavy ties (Gray's covariance has many discrete
# details: tied events of both causes, groups leaving the risk set, curves reaching 0)
set.seed(88)
many <- list()
for (i in 1:40) {
  n <- sample(15:90, 1)
  k <- sample(2:3, 1)
  grp <- sample(letters[1:k], n, replace = TRUE)
  first <- ceiling(rexp(n, 1 / sample(c(3, 8, 20), 1)))
  status <- sample(0:2, n, replace = TRUE, prob = c(0.25, 0.4, 0.35))
  strat <- sample(c("s1", "s2"), n, replace = TRUE)
  d <- data.frame(time = first, status = status, group = grp, strat = strat)
  if (length(unique(d$group)) < 2 || !all(c(1, 2) %in% d$status)) next
  plain <- cuminc(d$time, d$status, d$group)$Tests
  stratified <- cuminc(d$time, d$status, d$group, strata = d$strat)$Tests
  many[[length(many) + 1]] <- list(data = d, causes = as.numeric(rownames(plain)),
                                   statistic = unname(plain[, "stat"]), df = unname(plain[, "df"]),
                                   strata_statistic = unname(stratified[, "stat"]))
}
write_reference("gray_random_many", "cuminc(time, status, group)$Tests and cuminc(..., strata = strat)$Tests on 40 random tied data sets",
                list(cases = many))
