/*
    PREPARE_SLICES: read every slice into the AnnData contract, then QC it (per slice)
*/

include { SPATIALDOMAINS_READ } from '../../../modules/local/spatialdomains/read'
include { SPATIALDOMAINS_QC   } from '../../../modules/local/spatialdomains/qc'

workflow PREPARE_SLICES {

    take:
    ch_samplesheet  // channel: [ meta, data, image | [], truth_file | [], truth_column ]

    main:
    ch_versions = channel.empty()

    SPATIALDOMAINS_READ(ch_samplesheet)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_READ.out.versions)

    SPATIALDOMAINS_QC(SPATIALDOMAINS_READ.out.h5ad)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_QC.out.versions)

    emit:
    h5ad     = SPATIALDOMAINS_QC.out.h5ad   // channel: [ meta, qc.h5ad ]
    qc_json  = SPATIALDOMAINS_QC.out.json   // channel: [ meta, qc.json ]
    versions = ch_versions                  // channel: [ versions.yml ]
}
