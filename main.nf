#!/usr/bin/env nextflow
/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    spatialdomains
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Spatial domains and alignment-free multi-slice integration of spatial transcriptomics
    slices with STAIG and Spotscape.

        nextflow run . -profile test --outdir results
        nextflow run . --help
----------------------------------------------------------------------------------------
*/

include { SPATIALDOMAINS          } from './workflows/spatialdomains'
include { PIPELINE_INITIALISATION } from './subworkflows/local/utils_spatialdomains_pipeline'
include { completionSummary       } from './subworkflows/local/utils_spatialdomains_pipeline'
include { parseList               } from './subworkflows/local/utils_spatialdomains_pipeline'
include { paramsToJSON            } from './subworkflows/local/utils_spatialdomains_pipeline'

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    ENTRY WORKFLOW: the only place that reads params
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

workflow {

    //
    // Help, parameter checks, sample sheet (validated by the first task) -> slices
    //
    PIPELINE_INITIALISATION(
        params,
        file("${projectDir}/nextflow_schema.json"),
        params.input,
        params.simulate,
        params.sim_n_groups,
        params.n_domains,
        params.outdir,
        params.trace_report_suffix,
    )

    //
    // Gene sets for the enrichment: --go_gmt, else the simulated ones (--simulate), else none (DEG only)
    //
    ch_gmt = params.go_gmt
        ? channel.value(file(params.go_gmt, checkIfExists: true))
        : PIPELINE_INITIALISATION.out.gmt

    //
    // Slices -> QC -> image features -> per group x method x seed domains -> metrics -> analysis, reports
    //
    SPATIALDOMAINS(
        PIPELINE_INITIALISATION.out.slices,
        PIPELINE_INITIALISATION.out.group_sizes,
        PIPELINE_INITIALISATION.out.versions,
        parseList(params.methods),
        parseList(params.seeds).collect { seed -> seed.toInteger() },
        params.skip_images,
        params.byol_weights && params.byol_weights != 'imagenet' ? file(params.byol_weights, checkIfExists: true) : file("${projectDir}/assets/NO_FILE"),
        ch_gmt,
        paramsToJSON(params),
        params.skip_report,
        params.skip_spatialdata,
        params.skip_multiqc,
        file("${projectDir}/assets/multiqc_config.yml", checkIfExists: true),
        params.outdir,
    )

    //
    // Completion summary
    //
    outdir = params.outdir
    workflow.onComplete = {
        completionSummary(outdir)
    }
}
