/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    SPATIALDOMAINS: the analysis DAG (every value comes in through take:)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    slice:   READ -> QC -> [IMAGE_TILES -> IMAGE_FEATURES]   (images: slices that have one)
    group x method:         PREPARE
    group x method x seed:  TRAIN -> CLUSTER -> EVALUATE
    group x method x seed:  ANALYSE (marker genes, enrichment)
    group:                  COLLECT_METRICS, REPORT (HTML, domain maps for MultiQC), TO_SPATIALDATA (<group>.zarr)
    run:                    MULTIQC_CONTENT (*_mqc tables, versions, summary) -> MULTIQC (nf-core module)
----------------------------------------------------------------------------------------
*/

include { PREPARE_SLICES         } from '../subworkflows/local/prepare_slices'
include { IMAGE_FEATURES         } from '../subworkflows/local/image_features'
include { LEARN_DOMAINS          } from '../subworkflows/local/learn_domains'
include { ANALYSE_DOMAINS        } from '../subworkflows/local/analyse_domains'
include { SPATIALDOMAINS_TO_SPATIALDATA  } from '../modules/local/spatialdomains/to_spatialdata'
include { SPATIALDOMAINS_MULTIQC_CONTENT } from '../modules/local/spatialdomains/multiqc_content'
include { MULTIQC                } from '../modules/nf-core/multiqc/main'
include { softwareVersionsToYAML } from '../subworkflows/local/utils_spatialdomains_pipeline'
include { softwareVersionsToJSON } from '../subworkflows/local/utils_spatialdomains_pipeline'

workflow SPATIALDOMAINS {

    take:
    ch_samplesheet  // channel: [ meta, data, image | [], truth_file | [], truth_column ]
    ch_group_sizes  // channel: value map [ group: number of slices ]
    ch_init_versions // channel: [ versions.yml ] of the initialisation tasks
    methods         // value: list of method names
    seeds           // value: list of integer seeds
    skip_images     // value: boolean
    byol_weights    // value: path, BYOL weights or assets/NO_FILE
    ch_gmt          // channel: value path, gene sets (GMT) for the enrichment, or assets/NO_FILE (DEG only)
    params_json     // value: string, the run's parameters as one-line JSON (report, MultiQC)
    skip_report     // value: boolean
    skip_spatialdata // value: boolean
    skip_multiqc    // value: boolean
    multiqc_config  // value: path, assets/multiqc_config.yml
    outdir          // value: string

    main:
    ch_versions = ch_init_versions

    //
    // Per slice: read into the AnnData contract, QC
    //
    PREPARE_SLICES(ch_samplesheet)
    ch_versions = ch_versions.mix(PREPARE_SLICES.out.versions)

    //
    // Per slice with an image: tiles -> BYOL image features (unless --skip_images)
    //
    ch_qc = PREPARE_SLICES.out.h5ad
        .branch { meta, h5ad ->
            image: meta.has_image && !skip_images
            plain: true
        }
    ch_images = ch_samplesheet
        .map { meta, data, image, truth_file, truth_column -> [meta.id, image] }
    ch_image_in = ch_qc.image
        .map { meta, h5ad -> [meta.id, meta, h5ad] }
        .join(ch_images)
        .map { id, meta, h5ad, image -> [meta, h5ad, image] }

    IMAGE_FEATURES(ch_image_in, byol_weights)
    ch_versions = ch_versions.mix(IMAGE_FEATURES.out.versions)

    //
    // Per group x method x seed: prepare, train, cluster, evaluate; per group: metrics table
    //
    LEARN_DOMAINS(
        ch_qc.plain.mix(IMAGE_FEATURES.out.h5ad),
        ch_group_sizes,
        methods,
        seeds,
    )
    ch_versions = ch_versions.mix(LEARN_DOMAINS.out.versions)

    //
    // Software versions of every task so far, for the report's and MultiQC's run summary
    //
    ch_versions_json = softwareVersionsToJSON(ch_versions)

    //
    // Per group x method x seed: marker genes and enrichment; per group: the HTML report
    //
    ANALYSE_DOMAINS(
        LEARN_DOMAINS.out.clustered,
        LEARN_DOMAINS.out.metrics,
        PREPARE_SLICES.out.qc_json,
        ch_group_sizes,
        ch_gmt,
        methods.size() * seeds.size(),
        params_json,
        ch_versions_json,
        skip_report,
    )
    ch_versions = ch_versions.mix(ANALYSE_DOMAINS.out.versions)

    //
    // Per group: every method x seed's domains and embeddings, the spots and the H&E as one SpatialData
    // store (runs sorted by id and images by sample, so the cache does not depend on finishing order)
    //
    ch_spatialdata = channel.empty()
    if (!skip_spatialdata) {
        ch_group_images = ch_samplesheet
            .filter { meta, data, image, truth_file, truth_column -> image }
            .map { meta, data, image, truth_file, truth_column -> [meta.group, [meta.sample, image]] }
            .groupTuple()
            .map { group, pairs -> [group, pairs.sort { pair -> pair[0] }.transpose()] }
        ch_sdata_in = LEARN_DOMAINS.out.clustered
            .map { meta, h5ad -> [groupKey(meta.group, methods.size() * seeds.size()), meta, h5ad] }
            .groupTuple()
            .map { key, metas, h5ads ->
                def runs = [metas, h5ads].transpose().sort { run -> run[0].id }
                def meta = runs[0][0].findAll { k, v -> !(k in ['method', 'seed']) } + [id: runs[0][0].group]
                [meta.group, meta, runs.collect { run -> run[1] }]
            }
            .join(ch_group_images, remainder: true)
            .filter { group, meta, h5ads, images -> meta }
            .map { group, meta, h5ads, images -> [meta, h5ads, images ? images[0] : [], images ? images[1] : []] }
        SPATIALDOMAINS_TO_SPATIALDATA(ch_sdata_in)
        ch_versions    = ch_versions.mix(SPATIALDOMAINS_TO_SPATIALDATA.out.versions)
        ch_spatialdata = SPATIALDOMAINS_TO_SPATIALDATA.out.zarr
    }

    //
    // Run-wide: the *_mqc files of our own steps (tables of QC per slice and metrics per run, versions,
    // parameters; the groups' domain maps) -> one MultiQC report. Inputs sorted by name: -resume keeps it.
    //
    if (!skip_multiqc) {
        ch_all_metrics = LEARN_DOMAINS.out.metrics
            .mix(LEARN_DOMAINS.out.consensus)
            .map { meta, json -> json }
            .toSortedList { a, b -> a.name <=> b.name }
            .map { jsons -> ['run', jsons] }
        ch_all_qc = PREPARE_SLICES.out.qc_json
            .map { meta, json -> json }
            .toSortedList { a, b -> a.name <=> b.name }
            .map { jsons -> ['run', jsons] }
        ch_content_in = ch_all_metrics
            .join(ch_all_qc)
            .map { id, metrics, qc -> [[id: id], metrics, qc] }
        SPATIALDOMAINS_MULTIQC_CONTENT(ch_content_in, params_json, ch_versions_json)
        ch_versions = ch_versions.mix(SPATIALDOMAINS_MULTIQC_CONTENT.out.versions)

        ch_multiqc_files = SPATIALDOMAINS_MULTIQC_CONTENT.out.mqc.flatten()
            .mix(ANALYSE_DOMAINS.out.mqc)
            .toSortedList { a, b -> a.name <=> b.name }
        MULTIQC(ch_multiqc_files, multiqc_config, [], [], [], [])
        ch_versions = ch_versions.mix(MULTIQC.out.versions)
    }

    //
    // Software versions of every task -> pipeline_info (the container of every task is in the trace)
    //
    ch_collated_versions = softwareVersionsToYAML(ch_versions)
        .collectFile(
            storeDir: "${outdir}/pipeline_info",
            name: 'spatialdomains_software_versions.yml',
            sort: true,
            newLine: true,
        )

    emit:
    clustered = LEARN_DOMAINS.out.clustered   // channel: [ meta, h5ad ]
    metrics   = LEARN_DOMAINS.out.metrics     // channel: [ meta, metrics.json ]
    tables    = LEARN_DOMAINS.out.tables      // channel: [ meta, metrics.csv ]
    reports   = ANALYSE_DOMAINS.out.reports   // channel: [ meta, report.html ]
    spatialdata = ch_spatialdata              // channel: [ meta, <group>.zarr ]
    versions  = ch_collated_versions          // channel: [ path(versions.yml) ]
}
