/*
    ANALYSE_DOMAINS: per group x method x seed marker genes (DEG) and gene-set enrichment;
    per group one self-contained HTML report over every method and seed
*/

include { SPATIALDOMAINS_ANALYSE } from '../../../modules/local/spatialdomains/analyse'
include { SPATIALDOMAINS_REPORT  } from '../../../modules/local/spatialdomains/report'

workflow ANALYSE_DOMAINS {

    take:
    ch_clustered    // channel: [ meta, h5ad ]          group x method x seed, embedding + domains
    ch_metrics      // channel: [ meta, metrics.json ]  group x method x seed
    ch_qc           // channel: [ meta, qc.json ]       per slice
    ch_group_sizes  // channel: value map [ group: number of slices ]
    gmt             // value: path, gene sets (GMT) or assets/NO_FILE (DEG only)
    n_runs          // value: integer, methods x seeds per group
    params_json     // value: string, the run's parameters as one-line JSON (report run summary)
    versions_json   // channel: value string, software versions as one-line JSON (report run summary)
    skip_report     // value: boolean

    main:
    ch_versions = channel.empty()
    ch_reports  = channel.empty()
    ch_mqc      = channel.empty()

    //
    // Per group x method x seed: DEG per domain (Wilcoxon vs rest) and enrichment against the GMT
    //
    SPATIALDOMAINS_ANALYSE(ch_clustered.map { meta, h5ad -> [meta, h5ad, meta.method] }, gmt)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_ANALYSE.out.versions)

    //
    // Per group: fan in every run (sorted by id, so the cache does not depend on finishing order)
    // and the QC of the group's slices, then one HTML report
    //
    if (!skip_report) {
        ch_runs = ch_clustered
            .join(ch_metrics)
            .join(SPATIALDOMAINS_ANALYSE.out.tables)
            .map { meta, h5ad, json, tables -> [groupKey(meta.group, n_runs), meta, h5ad, json, tables] }
            .groupTuple()
            .map { key, metas, h5ads, jsons, tables ->
                def runs = [metas, h5ads, jsons, tables].transpose().sort { run -> run[0].id }
                def meta = runs[0][0].findAll { k, v -> !(k in ['method', 'seed']) } + [id: runs[0][0].group]
                def csvs = runs.collect { run -> run[3] }.flatten().sort { f -> f.name }
                [meta.group, meta, runs.collect { run -> run[1] }, runs.collect { run -> run[2] }, csvs]
            }
        ch_group_qc = ch_qc
            .combine(ch_group_sizes)
            .map { meta, json, sizes -> [groupKey(meta.group, sizes[meta.group]), meta, json] }
            .groupTuple()
            .map { key, metas, jsons ->
                [metas[0].group, [metas, jsons].transpose().sort { pair -> pair[0].sample }.collect { pair -> pair[1] }]
            }
        ch_report_in = ch_runs
            .join(ch_group_qc)
            .map { group, meta, h5ads, jsons, tables, qc -> [meta, h5ads, jsons, tables, qc] }

        SPATIALDOMAINS_REPORT(ch_report_in, params_json, versions_json)
        ch_versions = ch_versions.mix(SPATIALDOMAINS_REPORT.out.versions)
        ch_reports  = SPATIALDOMAINS_REPORT.out.html
        ch_mqc      = SPATIALDOMAINS_REPORT.out.mqc
    }

    emit:
    tables   = SPATIALDOMAINS_ANALYSE.out.tables   // channel: [ meta, [deg.csv, go.csv] ]  group x method x seed
    reports  = ch_reports                          // channel: [ meta, report.html ]       per group
    mqc      = ch_mqc                              // channel: [ <group>_domains_mqc.png ] per group
    versions = ch_versions                         // channel: [ versions.yml ]
}
