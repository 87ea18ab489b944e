#!/usr/bin/env Rscript
# Writes every reference fixture in tests/reference/json/ from R.
# Run from the project root:  Rscript tests/reference/make_reference.R
# or, to regenerate some pieces only:  Rscript tests/reference/make_reference.R tte km
# Each piece lives in tests/reference/r/*.R and writes its own JSON files with
# write_reference(name, call, values), which records the R call and the
# versions of R and the packages used. Never edit the JSON by hand.
suppressPackageStartupMessages({
  library(jsonlite)
  library(survival)
  library(cmprsk)
  library(MatchIt)
})
out_dir <- file.path("tests", "reference", "json")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

write_reference <- function(name, call, values, data = NULL) {
  doc <- list(
    name = name,
    call = call,
    r_version = R.version.string,
    packages = list(
      survival = as.character(packageVersion("survival")),
      cmprsk = as.character(packageVersion("cmprsk")),
      MatchIt = as.character(packageVersion("MatchIt"))
    ),
    values = values
  )
  if (!is.null(data)) doc$data <- data
  writeLines(toJSON(doc, digits = NA, auto_unbox = TRUE, na = "null", pretty = FALSE),
             file.path(out_dir, paste0(name, ".json")))
}

only <- commandArgs(trailingOnly = TRUE)  # piece names (tte for r/tte.R); none = all
for (piece in sort(list.files(file.path("tests", "reference", "r"), pattern = "\\.R$", full.names = TRUE))) {
  if (length(only) && !(sub("\\.R$", "", basename(piece)) %in% only)) next
  message("running ", piece)
  source(piece, local = new.env())
}
