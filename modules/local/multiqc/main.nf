process MULTIQC {
    tag "${workflow.runName}"
    label 'process_single'

    input:
    path metrics, stageAs: 'metrics/*'      // metrics JSON of every group x method x seed
    path qc     , stageAs: 'qc/*'           // qc.json of every slice
    path images , stageAs: 'images/*'       // <group>_domains_mqc.png of the group reports (may be empty)
    path config                             // assets/multiqc_config.yml
    val params_json                         // the run's parameters, one-line JSON (workflow summary)
    val versions_json                       // software versions {process: {tool: version}}, one-line JSON

    output:
    path "multiqc_report.html", emit: report
    path "multiqc_data"       , emit: data
    path "versions.yml"       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args  = task.ext.args ?: ''
    def files = { list, flag -> [list].flatten().collect { f -> "${flag} ${f}" }.join(' ') }
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    printf '%s\\n' '${params_json.toString().replace("'", "'\\''")}' > params.json
    printf '%s\\n' '${versions_json.toString().replace("'", "'\\''")}' > software_versions.yml

    # Custom content (*_mqc.tsv, versions, workflow summary) described by the MultiQC config
    spatialdomains multiqc-content \\
        ${files(metrics, '--metrics')} \\
        ${files(qc, '--qc')} \\
        --versions software_versions.yml \\
        --params params.json \\
        --outdir mqc

    mkdir -p images
    multiqc \\
        --config ${config} \\
        --force \\
        ${args} \\
        mqc images

    cat <<-END_VERSIONS > versions.yml
    # container: ${workflow.containerEngine ? task.container : 'none'}
    "${task.process}":
        multiqc: \$(multiqc --version | sed 's/.*version //')
        spatialdomains: \$(spatialdomains --version)
    END_VERSIONS
    """

    stub:
    """
    mkdir -p multiqc_data
    touch multiqc_report.html multiqc_data/multiqc_data.json

    cat <<-END_VERSIONS > versions.yml
    # container: ${workflow.containerEngine ? task.container : 'none'}
    "${task.process}":
        multiqc: \$(multiqc --version | sed 's/.*version //')
        spatialdomains: \$(spatialdomains --version)
    END_VERSIONS
    """
}
