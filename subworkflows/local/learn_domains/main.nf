/*
    LEARN_DOMAINS: per group x method PREPARE; per group x method x seed TRAIN -> CLUSTER ->
    EVALUATE; with several seeds per group x method CONSENSUS of the seeds' domains; per group one
    metrics table (fan-in over methods, seeds and consensus runs)
*/

include { SPATIALDOMAINS_PREPARE         } from '../../../modules/local/spatialdomains/prepare'
include { SPATIALDOMAINS_TRAIN           } from '../../../modules/local/spatialdomains/train'
include { SPATIALDOMAINS_CLUSTER         } from '../../../modules/local/spatialdomains/cluster'
include { SPATIALDOMAINS_EVALUATE        } from '../../../modules/local/spatialdomains/evaluate'
include { SPATIALDOMAINS_CONSENSUS       } from '../../../modules/local/spatialdomains/consensus'
include { SPATIALDOMAINS_COLLECT_METRICS } from '../../../modules/local/spatialdomains/collect_metrics'

workflow LEARN_DOMAINS {

    take:
    ch_slices       // channel: [ meta, h5ad ]  one per slice, ready for preparation
    ch_group_sizes  // channel: value map [ group: number of slices ]
    methods         // value: list of method names
    seeds           // value: list of integer seeds

    main:
    ch_versions = channel.empty()

    //
    // Fan in per group (joint training of its slices); groupKey carries the group's size so
    // each group goes on as soon as its own slices are ready. Slices are sorted by sample so
    // the task hash (and -resume) does not depend on which slice finished first.
    //
    ch_groups = ch_slices
        .combine(ch_group_sizes)
        .map { meta, h5ad, sizes -> [groupKey(meta.group, sizes[meta.group]), meta, h5ad] }
        .groupTuple()
        .map { key, metas, h5ads ->
            def slices = [metas, h5ads].transpose().sort { pair -> pair[0].sample }
            def first  = slices[0][0]
            def meta   = [
                id        : first.group,
                sample    : slices.collect { pair -> pair[0].sample }.join(','),
                group     : first.group,
                platform  : first.platform,
                has_image : slices.any { pair -> pair[0].has_image },
                has_truth : slices.any { pair -> pair[0].has_truth },
                n_domains : slices.collect { pair -> pair[0].n_domains }.find { k -> k },
            ]
            [meta, slices.collect { pair -> pair[1] }]
        }

    //
    // Fan out over methods: each method has its own preprocessing recipe
    //
    ch_prepare_in = ch_groups
        .combine(channel.fromList(methods))
        .map { meta, h5ads, method ->
            [meta + [id: "${meta.group}_${method}".toString(), method: method], h5ads, method]
        }
    SPATIALDOMAINS_PREPARE(ch_prepare_in)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_PREPARE.out.versions)

    //
    // Fan out over seeds: train, cluster and evaluate each group x method x seed
    //
    ch_train_in = SPATIALDOMAINS_PREPARE.out.h5ad
        .combine(channel.fromList(seeds))
        .map { meta, h5ad, seed ->
            [meta + [id: "${meta.group}_${meta.method}_s${seed}".toString(), seed: seed], h5ad, meta.method, seed]
        }
    SPATIALDOMAINS_TRAIN(ch_train_in)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_TRAIN.out.versions)

    SPATIALDOMAINS_CLUSTER(SPATIALDOMAINS_TRAIN.out.h5ad.map { meta, h5ad -> [meta, h5ad, meta.method] })
    ch_versions = ch_versions.mix(SPATIALDOMAINS_CLUSTER.out.versions)

    SPATIALDOMAINS_EVALUATE(SPATIALDOMAINS_CLUSTER.out.h5ad.map { meta, h5ad -> [meta, h5ad, meta.method] })
    ch_versions = ch_versions.mix(SPATIALDOMAINS_EVALUATE.out.versions)

    //
    // With several seeds, per group x method: the consensus of the seeds' domains, scored like a seed
    //
    ch_consensus_json    = channel.empty()
    ch_consensus_domains = channel.empty()
    n_consensus = seeds.size() > 1 ? methods.size() : 0
    if (n_consensus) {
        ch_consensus_in = SPATIALDOMAINS_CLUSTER.out.h5ad
            .map { meta, h5ad -> [groupKey("${meta.group}_${meta.method}".toString(), seeds.size()), meta, h5ad] }
            .groupTuple()
            .map { key, metas, h5ads ->
                def runs = [metas, h5ads].transpose().sort { run -> run[0].id }
                def meta = runs[0][0] + [id: "${runs[0][0].group}_${runs[0][0].method}_consensus".toString(), seed: 'consensus']
                [meta, runs.collect { run -> run[1] }, meta.method]
            }
        SPATIALDOMAINS_CONSENSUS(ch_consensus_in)
        ch_consensus_json    = SPATIALDOMAINS_CONSENSUS.out.json
        ch_consensus_domains = SPATIALDOMAINS_CONSENSUS.out.domains
        ch_versions = ch_versions.mix(SPATIALDOMAINS_CONSENSUS.out.versions)
    }

    //
    // Fan back in per group: one metrics table over every method x seed (and consensus)
    //
    ch_collect_in = SPATIALDOMAINS_EVALUATE.out.json
        .join(SPATIALDOMAINS_CLUSTER.out.domains)
        .mix(ch_consensus_json.join(ch_consensus_domains))
        .map { meta, json, domains -> [groupKey(meta.group, methods.size() * seeds.size() + n_consensus), meta, json, domains] }
        .groupTuple()
        .map { key, metas, jsons, domains ->
            def runs = [metas, jsons, domains].transpose().sort { run -> run[0].id }
            def meta = runs[0][0].findAll { k, v -> !(k in ['method', 'seed']) } + [id: runs[0][0].group]
            [meta, runs.collect { run -> run[1] }, runs.collect { run -> run[2] }]
        }
    SPATIALDOMAINS_COLLECT_METRICS(ch_collect_in)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_COLLECT_METRICS.out.versions)

    emit:
    prepared  = SPATIALDOMAINS_PREPARE.out.h5ad          // channel: [ meta, prepared.h5ad ]  group x method
    trained   = SPATIALDOMAINS_TRAIN.out.h5ad            // channel: [ meta, trained.h5ad ]   group x method x seed
    loss      = SPATIALDOMAINS_TRAIN.out.loss            // channel: [ meta, loss.csv ]
    clustered = SPATIALDOMAINS_CLUSTER.out.h5ad          // channel: [ meta, h5ad ]           embedding + domains
    domains   = SPATIALDOMAINS_CLUSTER.out.domains       // channel: [ meta, domains.csv ]
    metrics   = SPATIALDOMAINS_EVALUATE.out.json         // channel: [ meta, metrics.json ]
    consensus = ch_consensus_json                        // channel: [ meta, metrics.json ]   group x method, several seeds
    tables    = SPATIALDOMAINS_COLLECT_METRICS.out.csv   // channel: [ meta, metrics.csv ]    per group
    versions  = ch_versions                              // channel: [ versions.yml ]
}
