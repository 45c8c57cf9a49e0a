/*
    ANALYSE_DOMAINS: the place for the per-group analysis and report steps (DEG, GO,
    HTML report, MultiQC). It takes everything they need and emits named channels, so
    adding a module here changes nothing upstream. Today it passes nothing on.
*/

workflow ANALYSE_DOMAINS {

    take:
    ch_clustered    // channel: [ meta, h5ad ]          group x method x seed, embedding + domains
    ch_tables       // channel: [ meta, metrics.csv ]   per group
    ch_qc           // channel: [ meta, qc.json ]       per slice

    main:
    ch_versions = channel.empty()
    ch_reports  = channel.empty()

    emit:
    reports  = ch_reports   // channel: [ meta, report.html ]
    versions = ch_versions  // channel: [ versions.yml ]
}
