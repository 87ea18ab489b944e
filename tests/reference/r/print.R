# What R prints for a fitted model: capture.output() of print() / summary() on the
# reference data the other pieces use (lung, mgus2), so tests compare our results'
# __repr__ line by line (numbers and layout) to R's printed output.
# Options are R's defaults (digits = 7, width = 80), which is what print methods see in a session.
options(digits = 7, width = 80)
printed <- function(x) capture.output(print(x))

# lung, as in cox.R: complete cases, sex and ecog as character categories
d <- na.omit(lung[, c("time", "status", "age", "sex", "ph.ecog", "wt.loss")])
d$status <- d$status - 1L
d$sex <- ifelse(d$sex == 1, "male", "female")
d$ecog <- as.character(d$ph.ecog)
d <- d[, c("time", "status", "age", "sex", "ecog", "wt.loss")]
fit <- coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = d)
fit_rob <- coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = d, ties = "breslow", robust = TRUE)
km <- survfit(Surv(time, status) ~ sex, data = d)
km1 <- survfit(Surv(time, status) ~ 1, data = d)
sd <- survdiff(Surv(time, status) ~ sex, data = d)
zph <- cox.zph(fit, transform = "km")
write_reference(
  "print_lung",
  paste("d <- lung complete cases (time, status - 1, age, sex male/female, ecog character, wt.loss);",
        "print(coxph(Surv(time, status) ~ age + sex + ecog + wt.loss, data = d)); summary(fit);",
        "the same with ties = \"breslow\", robust = TRUE; print(survfit(Surv(time, status) ~ sex));",
        "print(survfit(Surv(time, status) ~ 1)); print(survdiff(Surv(time, status) ~ sex));",
        "print(cox.zph(fit, transform = \"km\"))"),
  list(
    coxph = printed(fit),
    coxph_summary = capture.output(print(summary(fit))),
    coxph_robust = printed(fit_rob),
    coxph_robust_summary = capture.output(print(summary(fit_rob))),
    survfit_sex = printed(km),
    survfit_all = printed(km1),
    survdiff_sex = printed(sd),
    cox_zph = printed(zph)
  ),
  data = d
)

# mgus2, as in finegray.R / competing.R: progression (1) with death (2) competing
mg <- survival::mgus2
mg$etime <- ifelse(mg$pstat == 0, mg$futime, mg$ptime)
mg$event <- ifelse(mg$pstat == 0, 2 * mg$death, 1)
mg <- mg[complete.cases(mg[, c("etime", "event", "age", "sex", "hgb")]), c("etime", "event", "age", "sex", "hgb")]
mg$sex <- as.character(mg$sex)
cov_mg <- model.matrix(~ age + sex + hgb, data = mg)[, -1]
crr_fit <- crr(mg$etime, mg$event, cov_mg, failcode = 1, cencode = 0)
ci <- cuminc(mg$etime, mg$event, group = mg$sex, cencode = 0)
write_reference(
  "print_mgus2",
  paste("mg <- mgus2 complete cases (etime, event 0/1/2, age, sex, hgb);",
        "print(crr(etime, event, model.matrix(~ age + sex + hgb)[, -1], failcode = 1, cencode = 0));",
        "summary(fit); print(cuminc(etime, event, group = sex, cencode = 0))"),
  list(
    crr = printed(crr_fit),
    crr_summary = capture.output(print(summary(crr_fit))),
    cuminc_sex = printed(ci)
  ),
  data = mg
)

# summary(glm(binomial)) on the propensity cohort matching.R wrote (read back from its JSON, so both
# pieces use the same rows; print.R sorts after matching.R in make_reference.R)
cohort <- jsonlite::fromJSON(file.path(out_dir, "glm_logit.json"))$data
ps_fit <- glm(mg ~ age + sex + sepsis + stage + lactate, data = cohort, family = binomial())
write_reference(
  "print_glm",
  "print(summary(glm(mg ~ age + sex + sepsis + stage + lactate, data = cohort, family = binomial()))), cohort of glm_logit.json",
  list(summary_glm = capture.output(print(summary(ps_fit)))),
  data = cohort
)
